{#
  The snapshot strategy: an SCD type 2 history table kept by a sqlflow_incremental model,
  with dbt snapshots' columns, values and rules (dbt's snapshot_staging_table,
  build_snapshot_table and snapshot_merge_sql are the reference). Times and hashes come
  from dbt's own snapshot_get_time() and snapshot_hash_arguments(), so a model and a dbt
  snapshot with the same settings hold the same rows. plan.snapshot holds the settings
  (see plan.snapshot_settings); plan.snapshot.columns maps dbt's meta column names to
  the configured ones.
#}

{#
  get_sqlflow_snapshot_build_sql(relation, sql, plan): the first version of the history
  table: every row of the model (deduplicated by dedupe_by) as the current version.
  Arguments: relation to create, sql (the model's SELECT), plan (from sqlflow_start).
  Returns: SQL (one CREATE TABLE AS statement).
#}
{% macro get_sqlflow_snapshot_build_sql(relation, sql, plan) %}
  {{ return(adapter.dispatch('get_sqlflow_snapshot_build_sql', 'dbt')(relation, sql, plan)) }}
{% endmacro %}

{% macro sqlflow__get_sqlflow_snapshot_build_sql(relation, sql, plan) %}
  create table {{ relation }} as
  {{ get_sqlflow_snapshot_build_select_sql(sql, plan) }}
{% endmacro %}


{#
  get_sqlflow_snapshot_build_select_sql(sql, plan): the rows of a snapshot's first build:
  each source row as its first version (with the snapshot's meta columns).
  Returns: a SELECT.
#}
{% macro get_sqlflow_snapshot_build_select_sql(sql, plan) %}
  {{ return(adapter.dispatch('get_sqlflow_snapshot_build_select_sql', 'dbt')(sql, plan)) }}
{% endmacro %}

{% macro sqlflow__get_sqlflow_snapshot_build_select_sql(sql, plan) %}
  select sbq.*, {{ get_sqlflow_snapshot_version_sql(plan, 'sbq') }}
  from (
    {{ get_sqlflow_snapshot_source_sql(sql, plan) }}
  ) as sbq
  {%- if plan.order_by %}
  order by {{ plan.order_by }}
  {%- endif %}
{% endmacro %}


{#
  get_sqlflow_snapshot_source_sql(sql, plan): the model's rows, the last rows per
  unique_key by dedupe_by when it is set (rows with a null key and rows tied for last are
  all kept, so the key check can count and refuse them, or collapse equal tied rows), as
  get_sqlflow_stage_sql does for a batch.
  Returns: a SELECT.
#}
{% macro get_sqlflow_snapshot_source_sql(sql, plan) %}
  {{ return(adapter.dispatch('get_sqlflow_snapshot_source_sql', 'dbt')(sql, plan)) }}
{% endmacro %}

{% macro sqlflow__get_sqlflow_snapshot_source_sql(sql, plan) %}
  {%- set keys = plan.unique_key | join(', ') -%}
  select * from (
    {{ sql }}
  ) as sqlflow_model
  {%- if plan.dedupe_by %}
  qualify ({{ plan.unique_key | join(' is null or ') }} is null)
       or count(*) over (partition by {{ keys }} order by {{ plan.dedupe_by | join(', ') }})
        = count(*) over (partition by {{ keys }})
  {%- endif %}
{% endmacro %}


{#
  get_sqlflow_snapshot_updated_at_sql(plan, alias): when a version starts, as dbt: the
  updated_at column of the row (timestamp strategy) or the snapshot time (check).
  Arguments: alias of the relation holding the model's row.
  Returns: a SQL expression.
#}
{% macro get_sqlflow_snapshot_updated_at_sql(plan, alias) %}
  {{ return(adapter.dispatch('get_sqlflow_snapshot_updated_at_sql', 'dbt')(plan, alias)) }}
{% endmacro %}

{% macro sqlflow__get_sqlflow_snapshot_updated_at_sql(plan, alias) %}
  {%- if plan.snapshot.strategy == 'timestamp' -%}
    {{ return(alias ~ '.' ~ plan.snapshot.updated_at) }}
  {%- endif -%}
  {{ return(sqlflow_snapshot_time()) }}
{% endmacro %}


{#
  get_sqlflow_snapshot_version_sql(plan, alias): the meta columns of a new current
  version of the model's row `alias`, with dbt's values: dbt_scd_id (dbt's hash of the
  key and updated_at), dbt_updated_at, dbt_valid_from, dbt_valid_to (dbt_valid_to_current
  or null, typed as dbt types it) and dbt_is_deleted 'False' (hard_deletes new_record).
  Returns: a select list, the configured column names as aliases.
#}
{% macro get_sqlflow_snapshot_version_sql(plan, alias) %}
  {{ return(adapter.dispatch('get_sqlflow_snapshot_version_sql', 'dbt')(plan, alias)) }}
{% endmacro %}

{% macro sqlflow__get_sqlflow_snapshot_version_sql(plan, alias) %}
  {%- set names = plan.snapshot.columns -%}
  {%- set updated_at = get_sqlflow_snapshot_updated_at_sql(plan, alias) -%}
  {%- set hashed = [] -%}
  {%- for key in plan.unique_key -%}{%- do hashed.append(alias ~ '.' ~ key) -%}{%- endfor -%}
  {%- do hashed.append(updated_at) -%}
  {{ snapshot_hash_arguments(hashed) }} as {{ names.dbt_scd_id }},
  {{ updated_at }} as {{ names.dbt_updated_at }},
  {{ updated_at }} as {{ names.dbt_valid_from }},
  coalesce(nullif({{ updated_at }}, {{ updated_at }}), {{ plan.snapshot.dbt_valid_to_current or 'null' }}) as {{ names.dbt_valid_to }}
  {%- if plan.snapshot.hard_deletes == 'new_record' %},
  'False' as {{ names.dbt_is_deleted }}
  {%- endif %}
{% endmacro %}


{#
  get_sqlflow_snapshot_is_current_sql(plan, alias): whether a history row is a key's
  current version: dbt_valid_to is null, or equals dbt_valid_to_current when it is set.
  Returns: a SQL condition.
#}
{% macro get_sqlflow_snapshot_is_current_sql(plan, alias) %}
  {{ return(adapter.dispatch('get_sqlflow_snapshot_is_current_sql', 'dbt')(plan, alias)) }}
{% endmacro %}

{% macro sqlflow__get_sqlflow_snapshot_is_current_sql(plan, alias) %}
  {%- set valid_to = alias ~ '.' ~ plan.snapshot.columns.dbt_valid_to -%}
  {%- if plan.snapshot.dbt_valid_to_current -%}
    ({{ valid_to }} = {{ plan.snapshot.dbt_valid_to_current }} or {{ valid_to }} is null)
  {%- else -%}
    {{ valid_to }} is null
  {%- endif -%}
{% endmacro %}


{#
  get_sqlflow_snapshot_changed_sql(plan, check_cols, current, source): dbt's row_changed.
  timestamp: the current version started before the row's updated_at; check: a check
  column differs, nulls compared as values. With hard_deletes new_record, a key whose
  current version is a deletion record has changed too.
  Arguments: check_cols (quoted columns of the check strategy), the two aliases.
  Returns: a SQL condition.
#}
{% macro get_sqlflow_snapshot_changed_sql(plan, check_cols, current, source) %}
  {{ return(adapter.dispatch('get_sqlflow_snapshot_changed_sql', 'dbt')(plan, check_cols, current, source)) }}
{% endmacro %}

{% macro sqlflow__get_sqlflow_snapshot_changed_sql(plan, check_cols, current, source) %}
  {%- set names = plan.snapshot.columns -%}
  {%- set tests = [] -%}
  {%- if plan.snapshot.strategy == 'timestamp' -%}
    {%- do tests.append(current ~ '.' ~ names.dbt_valid_from ~ ' < ' ~ source ~ '.' ~ plan.snapshot.updated_at) -%}
  {%- else -%}
    {%- for col in check_cols -%}
      {%- do tests.append(current ~ '.' ~ col ~ ' is distinct from ' ~ source ~ '.' ~ col) -%}
    {%- endfor -%}
  {%- endif -%}
  {%- if plan.snapshot.hard_deletes == 'new_record' -%}
    {%- do tests.append(current ~ '.' ~ names.dbt_is_deleted ~ " = 'True'") -%}
  {%- endif -%}
  coalesce(({{ tests | join(') or (') }}), false)
{% endmacro %}


{#
  get_sqlflow_snapshot_sql(args): one snapshot load, against the current versions only.
  The change set is computed once into a temporary table (helper statement, counted as
  nothing); then the current versions of changed (and, per hard_deletes, deleted) keys
  are closed ('updated') before the new versions, new keys and deletion records are
  inserted ('inserted'). An unchanged source writes nothing.
  Arguments: the strategy contract (target_relation, temp_relation: the staged batch,
  deduplicated, keys neither null nor repeated; unique_key, dest_columns, plan, ...).
  Returns: a list of {sql, count} steps.
#}
{% macro get_sqlflow_snapshot_sql(args) %}
  {{ return(adapter.dispatch('get_sqlflow_snapshot_sql', 'dbt')(args)) }}
{% endmacro %}

{% macro sqlflow__get_sqlflow_snapshot_sql(args) %}
  {%- set plan = args.plan -%}
  {%- set names = plan.snapshot.columns -%}
  {%- set changes = make_temp_relation(args.target_relation, '__sqlflow_snapshot').include(database=false, schema=false) -%}
  {%- set model_cols = get_sqlflow_snapshot_model_columns(args) -%}
  {%- set meta = [names.dbt_scd_id, names.dbt_updated_at, names.dbt_valid_from, names.dbt_valid_to] -%}
  {%- if plan.snapshot.hard_deletes == 'new_record' -%}{%- do meta.append(names.dbt_is_deleted) -%}{%- endif -%}
  {%- set insert_cols = model_cols + meta -%}
  {%- set insert_sql -%}
  insert into {{ args.target_relation }} ({{ insert_cols | join(', ') }})
  select {{ insert_cols | join(', ') }} from {{ changes }} where sqlflow_change = 'insert'
  {%- endset -%}
  {{ return([
      {'sql': get_sqlflow_snapshot_changes_sql(changes, args, model_cols), 'count': 'none'},
      {'sql': get_sqlflow_snapshot_close_sql(args.target_relation, changes, plan), 'count': 'updated'},
      {'sql': insert_sql, 'count': 'inserted'},
      {'sql': 'drop table ' ~ changes, 'count': 'none'}
  ]) }}
{% endmacro %}


{#
  get_sqlflow_snapshot_model_columns(args): the model's columns the history table holds:
  the staged batch's columns that the target has, other than the snapshot meta columns.
  Returns: a list of quoted column names.
#}
{% macro get_sqlflow_snapshot_model_columns(args) %}
  {{ return(adapter.dispatch('get_sqlflow_snapshot_model_columns', 'dbt')(args)) }}
{% endmacro %}

{% macro sqlflow__get_sqlflow_snapshot_model_columns(args) %}
  {%- set meta = args.plan.snapshot.columns.values() | map('lower') | list -%}
  {%- set dest = args.dest_columns | map(attribute='name') | map('lower') | list -%}
  {%- set cols = [] -%}
  {%- for col in adapter.get_columns_in_relation(args.temp_relation) -%}
    {%- if col.name | lower in dest and col.name | lower not in meta -%}
      {%- do cols.append(adapter.quote(col.name)) -%}
    {%- endif -%}
  {%- endfor -%}
  {{ return(cols) }}
{% endmacro %}


{#
  get_sqlflow_snapshot_changes_sql(relation, args, model_cols): CREATE TEMPORARY TABLE of
  the change set, as dbt's snapshot_staging_table computes it. Rows with sqlflow_change
  'close' carry a key and the dbt_valid_to that closes its current version; rows with
  'insert' are whole new rows: new keys and new versions of changed keys (as
  get_sqlflow_snapshot_version_sql), and the deletion records of hard_deletes.
  Returns: SQL (one statement).
#}
{% macro get_sqlflow_snapshot_changes_sql(relation, args, model_cols) %}
  {{ return(adapter.dispatch('get_sqlflow_snapshot_changes_sql', 'dbt')(relation, args, model_cols)) }}
{% endmacro %}

{% macro sqlflow__get_sqlflow_snapshot_changes_sql(relation, args, model_cols) %}
  {%- set plan = args.plan -%}
  {%- set keys = plan.unique_key -%}
  {%- set on = [] -%}
  {%- for key in keys -%}{%- do on.append('c.' ~ key ~ ' = s.' ~ key) -%}{%- endfor -%}
  {%- set check_cols = get_sqlflow_snapshot_check_columns(plan, model_cols) -%}
  create temporary table {{ relation }} as
  with current_rows as (
    select * from {{ args.target_relation }} as t where {{ get_sqlflow_snapshot_is_current_sql(plan, 't') }}
  ),
  joined as (
    select s.*, c.{{ keys[0] }} is not null as sqlflow_matched,
           {{ get_sqlflow_snapshot_changed_sql(plan, check_cols, 'c', 's') }} as sqlflow_changed
    from {{ args.temp_relation }} as s
    left join current_rows as c on {{ on | join(' and ') }}
  )
  {%- if plan.snapshot.hard_deletes != 'ignore' %},
  gone as (
    select c.* from current_rows as c
    where not exists (select 1 from {{ args.temp_relation }} as s where {{ on | join(' and ') }})
    {%- if plan.snapshot.hard_deletes == 'new_record' %}
      {#- as dbt: a key whose current version is already a deletion record stays deleted #}
      and not (c.{{ plan.snapshot.columns.dbt_is_deleted }} = 'True' and {{ get_sqlflow_snapshot_deleted_current_sql(plan, 'c') }})
    {%- endif %}
  )
  {%- endif %}
  select 'insert' as sqlflow_change, j.{{ model_cols | join(', j.') }}, {{ get_sqlflow_snapshot_version_sql(plan, 'j') }}
  from joined as j where not j.sqlflow_matched or j.sqlflow_changed
  union all by name
  select 'close' as sqlflow_change, j.{{ keys | join(', j.') }},
         {{ get_sqlflow_snapshot_updated_at_sql(plan, 'j') }} as {{ plan.snapshot.columns.dbt_valid_to }}
  from joined as j where j.sqlflow_matched and j.sqlflow_changed
  {%- if plan.snapshot.hard_deletes != 'ignore' %}
  {{ get_sqlflow_snapshot_deletes_sql(plan, model_cols, 'gone') }}
  {%- endif %}
{% endmacro %}


{#
  get_sqlflow_snapshot_check_columns(plan, model_cols): the columns the check strategy
  compares: check_cols, or with 'all' every model column but the key (dbt compares every
  column of the query; the key is equal by the join anyway).
  Returns: a list of quoted columns (empty for the timestamp strategy).
#}
{% macro get_sqlflow_snapshot_check_columns(plan, model_cols) %}
  {{ return(adapter.dispatch('get_sqlflow_snapshot_check_columns', 'dbt')(plan, model_cols)) }}
{% endmacro %}

{% macro sqlflow__get_sqlflow_snapshot_check_columns(plan, model_cols) %}
  {%- if plan.snapshot.strategy != 'check' -%}{{ return([]) }}{%- endif -%}
  {%- if plan.snapshot.check_cols != 'all' -%}
    {%- set cols = [] -%}
    {%- for col in plan.snapshot.check_cols -%}{%- do cols.append(adapter.quote(col)) -%}{%- endfor -%}
    {{ return(cols) }}
  {%- endif -%}
  {%- set keys = plan.unique_key_names | map('lower') | list -%}
  {%- set cols = [] -%}
  {%- for col in model_cols if col.strip('"') | lower not in keys -%}
    {%- do cols.append(col) -%}
  {%- endfor -%}
  {{ return(cols) }}
{% endmacro %}


{#
  get_sqlflow_snapshot_deletes_sql(plan, model_cols, gone): the change-set rows of hard
  deletes, as dbt: close each deleted key's current version at the snapshot time and,
  with new_record, insert a deletion record (the last values, dbt_is_deleted 'True',
  valid from the snapshot time, dbt_scd_id hashed from the closed version's and the time).
  Arguments: gone, the name of the CTE of the current versions whose key is gone.
  Returns: SQL: `union all by name` branches to append to the change set's SELECT.
#}
{% macro get_sqlflow_snapshot_deletes_sql(plan, model_cols, gone) %}
  {{ return(adapter.dispatch('get_sqlflow_snapshot_deletes_sql', 'dbt')(plan, model_cols, gone)) }}
{% endmacro %}

{% macro sqlflow__get_sqlflow_snapshot_deletes_sql(plan, model_cols, gone) %}
  {%- set names = plan.snapshot.columns -%}
  {%- set now = sqlflow_snapshot_time() -%}
  union all by name
  select 'close' as sqlflow_change, g.{{ plan.unique_key | join(', g.') }}, {{ now }} as {{ names.dbt_valid_to }}
  from {{ gone }} as g
  {%- if plan.snapshot.hard_deletes == 'new_record' %}
  union all by name
  select 'insert' as sqlflow_change, g.{{ model_cols | join(', g.') }},
         {{ snapshot_hash_arguments(['g.' ~ names.dbt_scd_id, now]) }} as {{ names.dbt_scd_id }},
         {{ now }} as {{ names.dbt_updated_at }},
         {{ now }} as {{ names.dbt_valid_from }},
         g.{{ names.dbt_valid_to }} as {{ names.dbt_valid_to }},
         'True' as {{ names.dbt_is_deleted }}
  from {{ gone }} as g
  {%- endif %}
{% endmacro %}


{#
  get_sqlflow_snapshot_deleted_current_sql(plan, alias): dbt's test that a current
  version is "the latest entry": dbt_valid_to = dbt_valid_to_current when that is set,
  else dbt_valid_to is null (dbt uses this narrower test when skipping deletion records).
  Returns: a SQL condition.
#}
{% macro get_sqlflow_snapshot_deleted_current_sql(plan, alias) %}
  {{ return(adapter.dispatch('get_sqlflow_snapshot_deleted_current_sql', 'dbt')(plan, alias)) }}
{% endmacro %}

{% macro sqlflow__get_sqlflow_snapshot_deleted_current_sql(plan, alias) %}
  {%- set valid_to = alias ~ '.' ~ plan.snapshot.columns.dbt_valid_to -%}
  {%- if plan.snapshot.dbt_valid_to_current -%}
    {{ valid_to }} = {{ plan.snapshot.dbt_valid_to_current }}
  {%- else -%}
    {{ valid_to }} is null
  {%- endif -%}
{% endmacro %}


{#
  get_sqlflow_snapshot_close_sql(target, changes, plan): close the current version of
  every key the change set closes, setting its dbt_valid_to.
  Returns: SQL (one UPDATE); its row count is the versions closed.
#}
{% macro get_sqlflow_snapshot_close_sql(target, changes, plan) %}
  {{ return(adapter.dispatch('get_sqlflow_snapshot_close_sql', 'dbt')(target, changes, plan)) }}
{% endmacro %}

{% macro sqlflow__get_sqlflow_snapshot_close_sql(target, changes, plan) %}
  {%- set valid_to = plan.snapshot.columns.dbt_valid_to -%}
  update {{ target }} as t
  set {{ valid_to }} = c.{{ valid_to }}
  from {{ changes }} as c
  where c.sqlflow_change = 'close'
  {%- for key in plan.unique_key %}
    and t.{{ key }} = c.{{ key }}
  {%- endfor %}
    and {{ get_sqlflow_snapshot_is_current_sql(plan, 't') }}
{% endmacro %}


{#
  sqlflow_snapshot_time(): the snapshot time of this run: --vars sqlflow_now when pinned
  (replays and tests), else dbt's snapshot_get_time() (now, as a dbt snapshot).
  Returns: a SQL expression of type TIMESTAMP.
#}
{% macro sqlflow_snapshot_time() %}
  {%- set pinned = adapter.sqlflow_pinned_now_literal(var('sqlflow_now', none)) -%}
  {%- if pinned -%}
    {{ return(pinned) }}
  {%- endif -%}
  {{ return(snapshot_get_time() | trim) }}
{% endmacro %}
