{#
  sqlflow_model_node(model): the graph node of a model given by name or unique_id.
  Raises a compiler error naming the model when there is none.
#}
{% macro sqlflow_model_node(model) %}
  {% for node in graph.nodes.values() if node.resource_type == 'model' %}
    {% if node.unique_id == model or node.name == model %}
      {{ return(node) }}
    {% endif %}
  {% endfor %}
  {{ exceptions.raise_compiler_error("sqlflow: no model named '" ~ model ~ "' in this project. Pass a model name, e.g. --args '{model: fct_events, ...}'.") }}
{% endmacro %}

{#
  dbt run-operation sqlflow_invalidate --args '{model: m, start: ..., end: ...}'
  Marks [start, end) of the model as not loaded, so its next run reloads that range.
#}
{% macro sqlflow_invalidate(model, start, end) %}
  {% set node = sqlflow_model_node(model) %}
  {% set removed = adapter.sqlflow_invalidate(node.unique_id, start, end) %}
  {{ log("sqlflow: " ~ node.unique_id ~ " [" ~ start ~ ", " ~ end ~ ") marked unloaded (" ~ removed ~ ")", info=true) }}
{% endmacro %}

{#
  dbt run-operation sqlflow_check_partitions --args '{model: m}'
  Runs the partition manager's consistency check; fails listing every inconsistency.
#}
{% macro sqlflow_check_partitions(model) %}
  {% set node = sqlflow_model_node(model) %}
  {% set relation = adapter.get_relation(node.database, node.schema, node.alias or node.name) %}
  {% if relation is none %}
    {{ exceptions.raise_compiler_error("sqlflow: model '" ~ node.unique_id ~ "' has no table yet. Run it first: dbt run -s " ~ node.name) }}
  {% endif %}
  {% set report = adapter.sqlflow_check_partitions(node.unique_id, relation, node.config) %}
  {{ log(report, info=true) }}
{% endmacro %}

{#
  dbt run-operation sqlflow_restore --args '{model: m, before_load: <load_id>}'
  (or at: <timestamp>): on DuckLake, puts the model's table and sqlflow's intervals,
  partitions and loads for it back as they were before that load (or at that time), as a
  new snapshot. The next run reloads the undone windows. `dbt-sqlflow restore` runs it.
#}
{% macro sqlflow_restore(model, before_load=none, at=none) %}
  {% set node = sqlflow_model_node(model) %}
  {% set relation = adapter.get_relation(node.database, node.schema, node.alias or node.name) %}
  {% if relation is none %}
    {{ exceptions.raise_compiler_error("sqlflow: model '" ~ node.unique_id ~ "' has no table, so there is no load to undo. Run it first: dbt run -s " ~ node.name) }}
  {% endif %}
  {% set report = adapter.sqlflow_restore(node.unique_id, relation, before_load, at) %}
  {{ log(report, info=true) }}
{% endmacro %}

{#
  dbt run-operation sqlflow_lake_maintenance --args '{older_than: "7 days"}'
  On a DuckLake (the target database, or `database`): flushes inlined data, merges small
  adjacent files, expires snapshots older than `older_than` (default 7 days) and deletes
  files scheduled for deletion more than `delete_files_older_than` ago (default 1 hour);
  logs the lake's files before and after. `dbt-sqlflow lake-maintenance` runs it.
#}
{% macro sqlflow_lake_maintenance(older_than=none, delete_files_older_than=none, database=none) %}
  {% set report = adapter.sqlflow_lake_maintenance(database, older_than, delete_files_older_than) %}
  {{ log(report, info=true) }}
{% endmacro %}
