{#
  sqlflow_run_vars(): the --vars sqlflow reads (sqlflow_now, sqlflow_start, sqlflow_end).
  Returns: dict.
#}
{% macro sqlflow_run_vars() %}
  {{ return({'sqlflow_now': var('sqlflow_now', none), 'sqlflow_start': var('sqlflow_start', none),
             'sqlflow_end': var('sqlflow_end', none)}) }}
{% endmacro %}

{#
  sqlflow_window_start() / sqlflow_window_end(): the current batch's window bounds, as
  TIMESTAMP literals, for filtering upstream sources inside a model.
#}
{% macro sqlflow_window_start() %}{{ return(adapter.sqlflow_window_sql('start', sqlflow_run_vars())) }}{% endmacro %}
{% macro sqlflow_window_end() %}{{ return(adapter.sqlflow_window_sql('end', sqlflow_run_vars())) }}{% endmacro %}
