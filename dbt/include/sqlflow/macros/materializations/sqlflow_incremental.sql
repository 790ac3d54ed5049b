{#
  materialized='sqlflow_incremental': a short script of named steps.

  Python decides (config, windows, strategy, counts, state); each step renders its SQL
  through a dispatchable macro. The first run (or --full-refresh) builds the table from
  the model's SQL in one transaction; later runs stage each batch and apply the strategy,
  each batch in one transaction with sqlflow's state writes and quality checks.
#}
{% materialization sqlflow_incremental, adapter='sqlflow', supported_languages=['sql'] %}
  {%- set target_relation = this.incorporate(type='table') -%}
  {%- set existing_relation = load_cached_relation(this) -%}
  {%- set full_refresh = should_full_refresh() or (existing_relation is not none and not existing_relation.is_table) -%}
  {%- set incremental = existing_relation is not none and not full_refresh -%}
  {%- set plan = adapter.sqlflow_start(model, compiled_code, target_relation, incremental, sqlflow_run_vars(), flags.EMPTY) -%}
  {%- set grant_config = config.get('grants') -%}

  {{ run_hooks(pre_hooks, inside_transaction=False) }}

  {% if plan.mode == 'build' and not plan.windowed %}
    {% do sqlflow_build(plan, target_relation, existing_relation) %}
  {% else %}
    {% if plan.mode == 'build' %}
      {% do sqlflow_create_empty(plan, target_relation, existing_relation) %}
    {% endif %}
    {% if plan.empty_batches and not plan.batches %}
      {#- With batches to load, each empty window is recorded in the transaction of the
          batch after it (or the last one): a failed batch leaves no later window marked. -#}
      {% do adapter.sqlflow_record_empty(plan.id) %}
      {% do adapter.commit() %}
    {% endif %}
    {%- set stage = make_temp_relation(target_relation, '__sqlflow_stage').include(database=false, schema=false) -%}
    {%- set columns = {} -%}
    {%- set rest = plan.batches[1:] -%}
    {% for batch in plan.batches[:1] %}
      {% do sqlflow_load_batch(plan, batch, target_relation, stage, columns, true, not rest) %}
    {% endfor %}
    {% if rest %}
      {#- The other batches run the SQL rendered once here, from Python: no per-batch
          rendering or dbt statement overhead (a 365-day backfill is 365 batches). -#}
      {% set templates = sqlflow_batch_templates(plan, target_relation, stage, columns.get('dest')) %}
      {% do adapter.sqlflow_load_batches(plan.id, templates, stage, target_relation) %}
      {{ run_hooks(post_hooks, inside_transaction=True) }}
      {% do adapter.sqlflow_commit_if_open() %}
    {% endif %}
    {% if plan.batches %}
      {% do adapter.drop_relation(stage) %}
    {% endif %}
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
  {% do adapter.sqlflow_start_build(plan.id) %}
  {% set sql = adapter.sqlflow_batch_sql(plan.id, compiled_code, none) %}
  {% if plan.snapshot %}
    {% set build_sql = get_sqlflow_snapshot_build_sql(intermediate, sql, plan) %}
  {% else %}
    {% set build_sql = get_sqlflow_stage_sql(intermediate, sql, plan, none, false) %}
  {% endif %}
  {% do adapter.sqlflow_execute(plan.id, build_sql, 'inserted') %}
  {% do adapter.sqlflow_inspect(plan.id, intermediate, target_relation, false, none) %}
  {% if existing_relation is not none %}
    {% do adapter.rename_relation(existing_relation, backup) %}
  {% endif %}
  {% do adapter.rename_relation(intermediate, target_relation) %}
  {% do adapter.sqlflow_reset_state(plan.id) %}
  {% do adapter.sqlflow_finish_batch(plan.id, target_relation, target_relation) %}
  {{ run_hooks(post_hooks, inside_transaction=True) }}
  {% do adapter.commit() %}
  {% do adapter.sqlflow_commit_batch(plan.id) %}
  {% if existing_relation is not none %}
    {% do adapter.drop_relation(backup) %}
  {% endif %}
{% endmacro %}


{#
  sqlflow_create_empty: the first step of a windowed build: an empty table with the
  model's columns (replacing an existing one) and no recorded intervals or partitions,
  in one transaction. The batches then fill it, each in its own transaction.
#}
{% macro sqlflow_create_empty(plan, target_relation, existing_relation) %}
  {%- set intermediate = make_intermediate_relation(target_relation) -%}
  {%- set backup = make_backup_relation(target_relation, 'table') -%}
  {% do drop_relation_if_exists(load_cached_relation(intermediate)) %}
  {% do drop_relation_if_exists(load_cached_relation(backup)) %}
  {% set sql = adapter.sqlflow_batch_sql(plan.id, compiled_code, none) %}
  {% call statement('sqlflow_create_empty') %}
    create table {{ intermediate }} as select * from ({{ sql }}
    ) as sqlflow_model limit 0
  {% endcall %}
  {% if existing_relation is not none %}
    {% do adapter.rename_relation(existing_relation, backup) %}
  {% endif %}
  {% do adapter.rename_relation(intermediate, target_relation) %}
  {% do adapter.sqlflow_reset_state(plan.id) %}
  {% do adapter.commit() %}
  {% if existing_relation is not none %}
    {% do adapter.drop_relation(backup) %}
  {% endif %}
{% endmacro %}


{#
  sqlflow_load_batch: stage one batch, check it, apply the strategy, commit.
  Arguments: plan (from sqlflow_start), batch (none or {start, end}), the target, the
  stage relation (replaced by each batch, dropped after the last), a dict that keeps the
  target's columns once the first batch has processed schema changes, and whether this
  is the first/last batch (for the inside-transaction hooks).
#}
{% macro sqlflow_load_batch(plan, batch, target_relation, stage, columns, first, last) %}
  {% if first %}{{ run_hooks(pre_hooks, inside_transaction=True) }}{% endif %}
  {% set sql = adapter.sqlflow_batch_sql(plan.id, compiled_code, batch) %}
  {% do run_query(get_sqlflow_stage_sql(stage, sql, plan, batch, true)) %}
  {% set facts = adapter.sqlflow_inspect(plan.id, stage, target_relation, true, batch) %}
  {% if not facts.skip_dml %}
    {% if 'dest' not in columns %}
      {% set dest_columns = process_schema_changes(plan.on_schema_change, stage, target_relation) %}
      {% do columns.update({'dest': dest_columns or adapter.get_columns_in_relation(target_relation)}) %}
    {% endif %}
    {% set dest_columns = columns['dest'] %}
    {% set args = {'target_relation': target_relation, 'temp_relation': stage, 'unique_key': plan.unique_key,
                   'dest_columns': dest_columns, 'incremental_predicates': plan.incremental_predicates,
                   'plan': plan, 'batch': batch, 'facts': facts} %}
    {% set strategy_macro = context['get_sqlflow_' ~ facts.strategy | replace('+', '_') ~ '_sql'] %}
    {% for step in strategy_macro(args) %}
      {% do adapter.sqlflow_execute(plan.id, step.sql, step.count) %}
    {% endfor %}
  {% endif %}
  {% do adapter.sqlflow_finish_batch(plan.id, stage, target_relation) %}
  {% if last %}{{ run_hooks(post_hooks, inside_transaction=True) }}{% endif %}
  {% do adapter.commit() %}
  {% do adapter.sqlflow_commit_batch(plan.id) %}
{% endmacro %}


{#
  sqlflow_batch_templates: the SQL of a batch rendered once, with tokens where each batch
  has its own window bounds, model SQL and partition predicates (the adapter substitutes
  them). One set of steps per strategy variant the batches may choose (plan.variants).
  Returns: {'stage': SQL, 'variants': {'<strategy>:<plain_insert>': [{sql, count}]}}.
#}
{% macro sqlflow_batch_templates(plan, target_relation, stage, dest_columns) %}
  {%- set tokens = adapter.sqlflow_template_tokens() -%}
  {%- set dest_columns = dest_columns or adapter.get_columns_in_relation(target_relation) -%}
  {%- set window = {'start_literal': tokens.start, 'end_literal': tokens.end} -%}
  {%- set variants = {} -%}
  {%- for variant in plan.variants -%}
    {%- set facts = {'strategy': variant.strategy, 'plain_insert': variant.plain_insert, 'rows': 1,
                     'target_predicate': tokens.target_predicate, 'overwrite_predicate': tokens.overwrite_predicate} -%}
    {%- set args = {'target_relation': target_relation, 'temp_relation': stage, 'unique_key': plan.unique_key,
                    'dest_columns': dest_columns, 'incremental_predicates': plan.incremental_predicates,
                    'plan': plan, 'batch': window, 'facts': facts} -%}
    {%- set strategy_macro = context['get_sqlflow_' ~ variant.strategy | replace('+', '_') ~ '_sql'] -%}
    {%- do variants.update({variant.strategy ~ ':' ~ variant.plain_insert: strategy_macro(args)}) -%}
  {%- endfor -%}
  {%- if plan.direct -%}
    {#- insert_overwrite/append with nothing to check on a staged batch: the batch goes
        straight from the model's query into the target, without a staging table. -#}
    {%- set source = '(' ~ get_sqlflow_batch_select_sql(tokens.model_sql, plan, window) ~ ') as sqlflow_batch' -%}
    {%- set facts = {'strategy': plan.direct, 'plain_insert': false, 'rows': 1,
                     'target_predicate': none, 'overwrite_predicate': tokens.overwrite_predicate} -%}
    {%- set args = {'target_relation': target_relation, 'temp_relation': source, 'unique_key': plan.unique_key,
                    'dest_columns': dest_columns, 'incremental_predicates': plan.incremental_predicates,
                    'plan': plan, 'batch': window, 'facts': facts} -%}
    {%- set strategy_macro = context['get_sqlflow_' ~ plan.direct ~ '_sql'] -%}
    {%- do variants.update({'direct': strategy_macro(args)}) -%}
  {%- endif -%}
  {{ return({'stage': get_sqlflow_stage_sql(stage, tokens.model_sql, plan, window, true), 'variants': variants}) }}
{% endmacro %}
