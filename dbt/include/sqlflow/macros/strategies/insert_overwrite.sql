{#
  get_sqlflow_insert_overwrite_sql(args): replace partitions. With a window, the rows of
  the window are deleted and the batch inserted (rows the batch no longer has disappear);
  without one, the partitions present in the batch are replaced. facts.overwrite_predicate
  (from the partition manager) selects what is replaced; nothing else is read or rewritten.
  Returns: a list of {sql, count} steps.
#}
{% macro get_sqlflow_insert_overwrite_sql(args) %}
  {{ return(adapter.dispatch('get_sqlflow_insert_overwrite_sql', 'dbt')(args)) }}
{% endmacro %}

{% macro sqlflow__get_sqlflow_insert_overwrite_sql(args) %}
  {%- set steps = [] -%}
  {%- if args.facts.overwrite_predicate -%}
    {%- set delete_sql -%}
    delete from {{ args.target_relation }} where {{ args.facts.overwrite_predicate }}
    {%- endset -%}
    {%- do steps.append({'sql': delete_sql, 'count': 'deleted'}) -%}
  {%- endif -%}
  {%- if args.facts.rows > 0 -%}
    {%- do steps.append({'sql': get_sqlflow_insert_sql(args.target_relation, args.temp_relation, args.dest_columns), 'count': 'inserted'}) -%}
  {%- endif -%}
  {{ return(steps) }}
{% endmacro %}
