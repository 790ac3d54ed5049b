{#
  is_incremental(): dbt's own test, extended to sqlflow's materialization.

  dbt-core answers true only for materialized='incremental'. sqlflow_incremental models
  read it the same way on their incremental runs; every other model gets dbt's answer
  unchanged. This macro is not dispatched in dbt-core, so it is overridden by name here
  (adapter packages take precedence over dbt's global project).
  Returns: bool.
#}
{% macro is_incremental() %}
    {% if not execute %}
        {{ return(False) }}
    {% else %}
        {% set relation = adapter.get_relation(this.database, this.schema, this.table) %}
        {{ return(relation is not none
                  and relation.type == 'table'
                  and model.config.materialized in ('incremental', 'sqlflow_incremental')
                  and not should_full_refresh()) }}
    {% endif %}
{% endmacro %}

{#
  A note on dispatch: sqlflow's macros dispatch with macro_namespace 'dbt', as dbt-duckdb
  does. dbt resolves an adapter's internal package only through the 'dbt' namespace (at
  parse time a namespace named 'dbt_sqlflow' is not found), and 'dbt' still searches the
  root project first, so a project can override any sqlflow__ macro by defining it.
#}
