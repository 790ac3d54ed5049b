{#
  get_sqlflow_delete_insert_sql(args): delete the target rows whose unique_key is in the
  batch (restricted to the batch's partition range when known), then insert the batch.
  Returns: a list of {sql, count} steps.
#}
{% macro get_sqlflow_delete_insert_sql(args) %}
  {{ return(adapter.dispatch('get_sqlflow_delete_insert_sql', 'dbt')(args)) }}
{% endmacro %}

{% macro sqlflow__get_sqlflow_delete_insert_sql(args) %}
  {%- set predicates = [] -%}
  {%- for key in args.plan.unique_key -%}
    {%- do predicates.append('DBT_INTERNAL_DEST.' ~ key ~ ' = DBT_INTERNAL_SOURCE.' ~ key) -%}
  {%- endfor -%}
  {%- if args.facts.target_predicate -%}{%- do predicates.append(args.facts.target_predicate) -%}{%- endif -%}
  {%- for p in args.incremental_predicates -%}{%- do predicates.append(p) -%}{%- endfor -%}
  {%- set delete_sql -%}
  delete from {{ args.target_relation }} as DBT_INTERNAL_DEST
  using {{ args.temp_relation }} as DBT_INTERNAL_SOURCE
  where ({{ predicates | join(') and (') }})
  {%- endset -%}
  {{ return([
      {'sql': delete_sql, 'count': 'deleted'},
      {'sql': get_sqlflow_insert_sql(args.target_relation, args.temp_relation, args.dest_columns), 'count': 'inserted'}
  ]) }}
{% endmacro %}
