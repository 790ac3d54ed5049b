{#
  materialized='sqlflow_incremental': a short script of named steps.

  Python decides (config, windows, strategy, counts, state); each step renders its SQL
  through a dispatchable macro. The first run (or --full-refresh) builds the table from
  the model's SQL in one transaction; windowed builds and later runs load their batches
  in sqlflow's one batch loop (Python, sqlflow_load), each batch in one transaction with
  sqlflow's state writes and quality checks.
#}
{% materialization sqlflow_incremental, adapter='sqlflow', supported_languages=['sql'] %}
  {%- set target_relation = this.incorporate(type='table') -%}
  {%- set existing_relation = load_cached_relation(this) -%}
  {%- set full_refresh = should_full_refresh() or (existing_relation is not none and not existing_relation.is_table) -%}
  {%- set incremental = existing_relation is not none and not full_refresh -%}
  {%- set plan = adapter.sqlflow_start(model, compiled_code, target_relation, incremental, sqlflow_run_vars(), flags.EMPTY, full_refresh) -%}
  {%- set grant_config = config.get('grants') -%}

  {{ run_hooks(pre_hooks, inside_transaction=False) }}

  {%- set lake = adapter.sqlflow_lake_layout(plan.id, target_relation, config.get('sorted_by')) -%}
  {#- a change feed is applied by the batch loop from the first run on #}
  {% if lake is not none and plan.mode == 'build' and not plan.cdc %}
    {% do sqlflow_build_in_place(plan, target_relation, existing_relation, lake) %}
  {% elif plan.mode == 'build' and not plan.windowed and not plan.cdc %}
    {% do sqlflow_build(plan, target_relation, existing_relation) %}
  {% else %}
    {% if plan.mode == 'build' %}
      {% do sqlflow_create_empty(plan, target_relation, existing_relation) %}
    {% elif lake is not none %}
      {% do adapter.sqlflow_lake_relayout(plan.id, target_relation, config.get('sorted_by')) %}
    {% endif %}
    {% do sqlflow_load(plan, target_relation) %}
  {% endif %}

  {% do apply_grants(target_relation, grant_config, should_revoke=should_revoke(existing_relation, full_refresh)) %}
  {% do persist_docs(target_relation, model) %}
  {{ run_hooks(post_hooks, inside_transaction=False) }}

  {% do store_result('main', response=adapter.sqlflow_result(plan.id)) %}
  {{ return({'relations': [target_relation]}) }}
{% endmaterialization %}


{#
  sqlflow_build: create the table from the model's SQL in one transaction, swapping it in
  for an existing one (full refresh) only once the new one passed its checks.
#}
{% macro sqlflow_build(plan, target_relation, existing_relation) %}
  {%- set intermediate = make_intermediate_relation(target_relation) -%}
  {%- set backup = make_backup_relation(target_relation, 'table') -%}
  {% do drop_relation_if_exists(load_cached_relation(intermediate)) %}
  {% do drop_relation_if_exists(load_cached_relation(backup)) %}
  {{ run_hooks(pre_hooks, inside_transaction=True) }}
  {% if plan.snapshot %}
    {% set build_sql = get_sqlflow_snapshot_build_sql(intermediate, compiled_code, plan) %}
  {% else %}
    {% set build_sql = get_sqlflow_stage_sql(intermediate, compiled_code, plan, none, false) %}
  {% endif %}
  {% do adapter.sqlflow_build(plan.id, build_sql, intermediate) %}
  {% if existing_relation is not none %}
    {% do adapter.rename_relation(existing_relation, backup) %}
  {% endif %}
  {% do adapter.rename_relation(intermediate, target_relation) %}
  {% do adapter.sqlflow_record_build(plan.id, target_relation) %}
  {{ run_hooks(post_hooks, inside_transaction=True) }}
  {% do adapter.sqlflow_commit(plan.id) %}
  {% if existing_relation is not none %}
    {% do adapter.drop_relation(backup) %}
  {% endif %}
{% endmacro %}


{#
  sqlflow_build_in_place: a build on DuckLake. The table is created (replacing an existing
  one) empty, laid out (lake: native partitioning from partition_by, sorted_by), then
  filled from the model's SQL and recorded, all in one DuckLake transaction: there is no
  __dbt_tmp table and rename, so the data files sit under the table's own path, laid out
  from the first one, and a failed build leaves the old table and state as they were. A
  windowed build creates the table empty here and commits; its batches then fill it.
#}
{% macro sqlflow_build_in_place(plan, target_relation, existing_relation, lake) %}
  {% if existing_relation is not none and not existing_relation.is_table %}
    {% do adapter.drop_relation(existing_relation) %}
  {% endif %}
  {% if plan.snapshot %}
    {% set select_sql = get_sqlflow_snapshot_build_select_sql(compiled_code, plan) %}
  {% else %}
    {% set select_sql = get_sqlflow_batch_select_sql(compiled_code, plan, none) %}
  {% endif %}
  {#- created and committed (a windowed build forgets the state with it), retried after a lost catalog #}
  {% do adapter.sqlflow_create_in_place(plan.id, get_sqlflow_lake_create_sql(target_relation, select_sql, lake), plan.windowed) %}
  {% if plan.windowed %}
    {% do sqlflow_load(plan, target_relation) %}
  {% else %}
    {{ run_hooks(pre_hooks, inside_transaction=True) }}
    {% do adapter.sqlflow_build(plan.id, 'insert into ' ~ target_relation ~ ' ' ~ select_sql, target_relation) %}
    {% do adapter.sqlflow_record_build(plan.id, target_relation) %}
    {{ run_hooks(post_hooks, inside_transaction=True) }}
    {% do adapter.sqlflow_commit(plan.id) %}
  {% endif %}
{% endmacro %}


{#
  get_sqlflow_lake_create_sql(relation, select_sql, lake, with_rows): CREATE OR REPLACE of
  a lake table with the columns of select_sql and no rows, its layout (lake, from
  adapter.sqlflow_lake_layout), then (with_rows) the rows of select_sql.
  Returns: SQL (two to four statements).
#}
{% macro get_sqlflow_lake_create_sql(relation, select_sql, lake) %}
  {{ return(adapter.dispatch('get_sqlflow_lake_create_sql', 'dbt')(relation, select_sql, lake)) }}
{% endmacro %}

{% macro sqlflow__get_sqlflow_lake_create_sql(relation, select_sql, lake) %}
  create or replace table {{ relation }} as select * from ({{ select_sql }}) as sqlflow_model limit 0;
  {%- if lake.partitioned_by %}
  alter table {{ relation }} set partitioned by ({{ lake.partitioned_by }});
  {%- endif %}
  {%- if lake.sorted_by %}
  alter table {{ relation }} set sorted by ({{ lake.sorted_by }});
  {%- endif %}
{% endmacro %}


{#
  sqlflow_create_empty: the first step of a windowed build: an empty table with the
  model's columns (a snapshot's meta columns besides; a change feed's target columns and,
  for scd2, validity columns), replacing an existing one, with no
  recorded intervals or partitions, in one transaction. The batches then fill it, each in
  its own transaction.
#}
{% macro sqlflow_create_empty(plan, target_relation, existing_relation) %}
  {#- with no table to replace, the table is created in its place (as dbt's incremental
      materialization does on a first run): no intermediate to rename -#}
  {%- set intermediate = target_relation if existing_relation is none else make_intermediate_relation(target_relation) -%}
  {% if existing_relation is not none %}
    {%- set backup = make_backup_relation(target_relation, 'table') -%}
    {% do drop_relation_if_exists(load_cached_relation(intermediate)) %}
    {% do drop_relation_if_exists(load_cached_relation(backup)) %}
  {% endif %}
  {%- set no_rows = 'select * from (' ~ compiled_code ~ '\n) as sqlflow_model limit 0' -%}
  {#- a history table has the snapshot's meta columns besides the model's #}
  {% call statement('sqlflow_create_empty') %}
    {% if plan.snapshot %}
      {{ get_sqlflow_snapshot_build_sql(intermediate, no_rows, plan) }}
    {% elif plan.cdc %}
      {{ get_sqlflow_cdc_create_sql(intermediate, plan.cdc.source_sql or compiled_code, plan) }}
    {% else %}
      create table {{ intermediate }} as {{ no_rows }}
    {% endif %}
  {% endcall %}
  {% if existing_relation is not none %}
    {% do adapter.rename_relation(existing_relation, backup) %}
    {% do adapter.rename_relation(intermediate, target_relation) %}
  {% endif %}
  {% do adapter.sqlflow_reset_state(plan.id) %}
  {% do adapter.commit() %}
  {% if existing_relation is not none %}
    {% do adapter.drop_relation(backup) %}
  {% endif %}
{% endmacro %}


{#
  sqlflow_load: the batches of a windowed build or an incremental run. Renders the SQL
  once (sqlflow_batch_templates), then sqlflow's batch loop (Python) loads every batch,
  each in its own transaction. Hooks with inside_transaction=True run at fixed points,
  whatever the number of batches: pre-hooks in the first batch's transaction, post-hooks
  in the last one's, just before it commits (with no batch to load, in the transaction
  that records the run's empty windows).
#}
{% macro sqlflow_load(plan, target_relation) %}
  {{ run_hooks(pre_hooks, inside_transaction=True) }}
  {%- set stage = make_temp_relation(target_relation, '__sqlflow_stage').include(database=false, schema=false) -%}
  {% if plan.has_batches %}
    {#- a build's keyed batches load a group at a time, as one insert, while their keys
        are all new: the batch-by-batch SQL is rendered only if a group needs it -#}
    {%- set part = 'at_once' if plan.mode == 'build' and plan.new_keys else 'all' -%}
    {% set templates = sqlflow_batch_templates(plan, target_relation, stage, part) %}
    {%- set later = {'macro': sqlflow_batch_templates, 'args': [plan, target_relation, stage, 'by_batch']} if part == 'at_once' else none -%}
    {% do adapter.sqlflow_load_batches(plan.id, templates, stage, later) %}
  {% endif %}
  {{ run_hooks(post_hooks, inside_transaction=True) }}
  {% do adapter.sqlflow_commit(plan.id) %}
  {% if plan.has_batches and adapter.sqlflow_staged(plan.id) %}
    {% do adapter.drop_relation(stage) %}
  {% endif %}
{% endmacro %}


{#
  sqlflow_batch_templates: the SQL of every batch, rendered once, with tokens where each
  batch has its own window bounds, model SQL and partition predicates (the batch loop
  substitutes them). First the staged batch's shape (no rows) is created, so schema
  changes are processed once, before the first batch, in its transaction. One set of
  steps per strategy variant the batches may choose (plan.variants), and 'direct' when
  batches skip staging (plan.direct), 'new_keys' for a group of batches whose keys are
  all new, loaded as one insert (plan.new_keys).
  part: 'all'; or 'at_once' (only 'new_keys' and 'direct', no stage) and 'by_batch' (the
  rest, rendered when the batch loop first needs it) for a build.
  Returns: {'stage': SQL or none, 'variants': {'<strategy>:<plain_insert>', 'direct' or 'new_keys': [{sql, count}]}}.
#}
{% macro sqlflow_batch_templates(plan, target_relation, stage, part='all') %}
  {%- set tokens = adapter.sqlflow_template_tokens() -%}
  {%- set window = {'start_literal': tokens.start, 'end_literal': tokens.end} if plan.windowed else none -%}
  {%- if part != 'at_once' -%}
    {% do run_query(get_sqlflow_stage_shape_sql(stage, plan.batch_columns)) %}
  {%- endif -%}
  {#- a build's table was just created from the model's columns: nothing to change -#}
  {%- set dest_columns = none if plan.mode == 'build' else process_schema_changes(plan.on_schema_change, stage, target_relation) -%}
  {%- set dest_columns = dest_columns or adapter.get_columns_in_relation(target_relation) -%}
  {%- set variants = {} -%}
  {%- if part != 'at_once' -%}
    {%- set merge_form = none -%}
    {%- if plan.variants | selectattr('strategy', 'equalto', 'merge') | list -%}
      {%- set merge_form = adapter.sqlflow_merge_form(plan.id, dest_columns, target_relation) -%}
    {%- endif -%}
    {%- for variant in plan.variants -%}
      {%- set facts = {'strategy': variant.strategy, 'plain_insert': variant.plain_insert, 'rows': 1, 'merge_form': merge_form,
                       'target_predicate': tokens.target_predicate, 'overwrite_predicate': tokens.overwrite_predicate} -%}
      {%- set args = {'target_relation': target_relation, 'temp_relation': stage, 'unique_key': plan.unique_key,
                      'dest_columns': dest_columns, 'incremental_predicates': plan.incremental_predicates,
                      'plan': plan, 'batch': window, 'facts': facts} -%}
      {%- do variants.update({variant.key: sqlflow_strategy_sql(variant, args)}) -%}
    {%- endfor -%}
  {%- endif -%}
  {%- if plan.direct and part != 'by_batch' -%}
    {#- insert_overwrite/append with nothing to check on a staged batch: the batch goes
        straight from the model's query into the target, without a staging table. -#}
    {%- set source = '(' ~ get_sqlflow_batch_select_sql(tokens.model_sql, plan, window) ~ ') as sqlflow_batch' -%}
    {%- set facts = {'strategy': plan.direct.strategy, 'plain_insert': false, 'rows': 1, 'merge_form': none,
                     'target_predicate': none, 'overwrite_predicate': tokens.overwrite_predicate} -%}
    {%- set args = {'target_relation': target_relation, 'temp_relation': source, 'unique_key': plan.unique_key,
                    'dest_columns': dest_columns, 'incremental_predicates': plan.incremental_predicates,
                    'plan': plan, 'batch': window, 'facts': facts} -%}
    {%- do variants.update({'direct': sqlflow_strategy_sql(plan.direct, args)}) -%}
  {%- endif -%}
  {%- if plan.new_keys and part != 'by_batch' -%}
    {#- a group of batches whose keys are all new (checked by the batch loop): one plain
        insert of the group's range, in sorted_by's order if any -#}
    {%- set group_plan = plan.copy() -%}
    {%- do group_plan.update({'order_by': plan.new_keys_order_by}) -%}
    {%- set source = '(' ~ get_sqlflow_batch_select_sql(tokens.model_sql, group_plan, window) ~ ') as sqlflow_batch' -%}
    {%- set facts = {'strategy': 'append', 'plain_insert': true, 'rows': 1, 'merge_form': none,
                     'target_predicate': none, 'overwrite_predicate': none} -%}
    {%- set args = {'target_relation': target_relation, 'temp_relation': source, 'unique_key': plan.unique_key,
                    'dest_columns': dest_columns, 'incremental_predicates': plan.incremental_predicates,
                    'plan': group_plan, 'batch': window, 'facts': facts} -%}
    {%- do variants.update({'new_keys': sqlflow_strategy_sql(plan.new_keys, args)}) -%}
  {%- endif -%}
  {%- set stage_sql = none if part == 'at_once' else get_sqlflow_stage_sql(stage, tokens.model_sql, plan, window, true) -%}
  {{ return({'stage': stage_sql, 'variants': variants}) }}
{% endmacro %}


{#
  sqlflow_strategy_sql(strategy, args): the steps of one strategy, from the macro the
  strategy registry names (strategy.macro_name, e.g. get_sqlflow_delete_insert_sql), like
  dbt-adapters' get_incremental_strategy_macro.
  Arguments: strategy, {strategy, macro} from the plan; args, the strategy contract.
  Returns: a list of {sql, count} steps.
#}
{% macro sqlflow_strategy_sql(strategy, args) %}
  {%- if strategy.macro_name not in context -%}
    {{ exceptions.raise_compiler_error("sqlflow: incremental strategy '" ~ strategy.strategy ~ "' has no macro " ~ strategy.macro_name ~ " (found no macro of that name in this project or its packages). Fix: define " ~ strategy.macro_name ~ "(args) returning a list of {sql, count} steps, or use one of sqlflow's strategies.") }}
  {%- endif -%}
  {{ return(context[strategy.macro_name](args)) }}
{% endmacro %}
