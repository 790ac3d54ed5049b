{#
  get_sqlflow_append_sql(args): insert the staged batch.
  Arguments: the strategy contract (target_relation, temp_relation, unique_key,
  dest_columns, incremental_predicates, plan, batch, facts).
  Returns: a list of {sql, count} steps; count names what the statement's rows are.
#}
{% macro get_sqlflow_append_sql(args) %}
  {{ return(adapter.dispatch('get_sqlflow_append_sql', 'dbt')(args)) }}
{% endmacro %}

{% macro sqlflow__get_sqlflow_append_sql(args) %}
  {{ return([{'sql': get_sqlflow_insert_sql(args.target_relation, args.temp_relation, args.dest_columns), 'count': 'inserted'}]) }}
{% endmacro %}

{#
  get_sqlflow_insert_sql(target, source, dest_columns): INSERT of every row of source.
  Returns: SQL.
#}
{% macro get_sqlflow_insert_sql(target, source, dest_columns) %}
  {{ return(adapter.dispatch('get_sqlflow_insert_sql', 'dbt')(target, source, dest_columns)) }}
{% endmacro %}

{% macro sqlflow__get_sqlflow_insert_sql(target, source, dest_columns) %}
  {%- set cols = get_quoted_csv(dest_columns | map(attribute='name')) -%}
  insert into {{ target }} ({{ cols }}) select {{ cols }} from {{ source }}
{% endmacro %}
