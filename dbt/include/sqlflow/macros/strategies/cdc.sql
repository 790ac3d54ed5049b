{#
  The cdc strategy: apply a feed of change events (plan.cdc, from cdc.layout in Python).
  The staged batch holds one normalised row per event: the target's columns, sqlflow_seq
  (the sequence), sqlflow_rank (0 snapshot read, 1 other), sqlflow_op (upsert, delete,
  truncate). The ledger (plan.cdc.ledger, sqlflow's state) holds per key the sequence
  applied last (scd1) or the tombstones of deletes (scd2), and the truncates; sqlflow's
  batch loop updates it from plan.cdc.changes after these steps, in the same transaction.
#}

{#
  sqlflow_cdc_key_join(plan, left, right): `left.k = right.k and ...` over unique_key.
  Returns: a SQL condition.
#}
{% macro sqlflow_cdc_key_join(plan, left, right) %}
  {%- set parts = [] -%}
  {%- for key in plan.cdc.key -%}{%- do parts.append(left ~ '.' ~ key ~ ' = ' ~ right ~ '.' ~ key) -%}{%- endfor -%}
  {{ return(parts | join(' and ')) }}
{% endmacro %}


{#
  get_sqlflow_cdc_create_sql(relation, sql, plan): the empty target of a change feed: its
  columns, typed as the model returns them, and for scd2 the validity columns typed like
  the sequence.
  Returns: SQL (one CREATE TABLE AS).
#}
{% macro get_sqlflow_cdc_create_sql(relation, sql, plan) %}
  {{ return(adapter.dispatch('get_sqlflow_cdc_create_sql', 'dbt')(relation, sql, plan)) }}
{% endmacro %}

{% macro sqlflow__get_sqlflow_cdc_create_sql(relation, sql, plan) %}
  create table {{ relation }} as
  select {{ plan.cdc.columns | join(', ') }}
  {%- if plan.cdc.stored_as == 'scd2' %}, sqlflow_seq as {{ plan.cdc.valid_from }}, sqlflow_seq as {{ plan.cdc.valid_to }}{% endif %}
  from (select {{ plan.cdc.stage_select }} from (
    {{ sql }}
  ) as sqlflow_model) as sqlflow_feed
  limit 0
{% endmacro %}


{#
  get_sqlflow_cdc_sql(args): the steps of one batch of change events.
  scd1: the changes per key (get_sqlflow_cdc_scd1_changes_sql), a truncate's deletes,
  the deleted and the replaced rows (one delete), the rewritten and the new rows (one
  insert), then one query counting each kind (and the stale events: ignored) in the
  change table. scd2: the events of the touched keys with their history
  (get_sqlflow_cdc_scd2_events_sql), their versions against the target's
  (get_sqlflow_cdc_scd2_changes_sql), then the removed, rewritten and new versions.
  Returns: a list of {sql, count} steps (a truncate's step with a `when` query: it runs only
  when the batch has a truncate).
#}
{% macro get_sqlflow_cdc_sql(args) %}
  {{ return(adapter.dispatch('get_sqlflow_cdc_sql', 'dbt')(args)) }}
{% endmacro %}

{% macro sqlflow__get_sqlflow_cdc_sql(args) %}
  {%- set c = args.plan.cdc -%}
  {%- set on = sqlflow_cdc_key_join(args.plan, 't', 'c') -%}
  {%- set cols = c.columns | join(', ') -%}
  {%- set steps = [] -%}
  {%- if c.stored_as == 'scd2' -%}
    {%- set cols = cols ~ ', ' ~ c.valid_from ~ ', ' ~ c.valid_to -%}
    {%- set on = on ~ ' and t.' ~ c.valid_from ~ ' = c.sqlflow_old_from' -%}
    {%- do steps.append({'sql': get_sqlflow_cdc_scd2_events_sql(args), 'count': 'none'}) -%}
    {%- do steps.append({'sql': 'select count(*) from ' ~ c.events ~ ' where sqlflow_ignored', 'count': 'ignored'}) -%}
    {%- do steps.append({'sql': get_sqlflow_cdc_scd2_changes_sql(args), 'count': 'none'}) -%}
    {%- set ignored = '' -%}
  {%- else -%}
    {%- do steps.append({'sql': get_sqlflow_cdc_scd1_changes_sql(args), 'count': 'none'}) -%}
    {%- if c.truncates -%}
      {%- do steps.append({'sql': get_sqlflow_cdc_scd1_truncate_sql(args), 'count': 'deleted', 'when': "select count(*) > 0 from " ~ args.temp_relation ~ " where sqlflow_op = 'truncate'"}) -%}
    {%- endif -%}
    {%- set ignored = 'cast(coalesce(sum(sqlflow_ignored), 0) as bigint), ' -%}
  {%- endif -%}
  {#- the removed and the replaced rows in one delete, the rewritten and the new rows in
      one insert (one pass over the target each; in sorted_by's order, if the model has
      one), every kind counted in the change table by one query #}
  {%- do steps.append({'sql': 'delete from ' ~ args.target_relation ~ ' as t using ' ~ c.changes ~ ' as c where ' ~ on ~ " and c.sqlflow_action in ('delete', 'update')", 'count': 'none'}) -%}
  {%- set order = ' order by ' ~ args.plan.sorted_by if args.plan.sorted_by else '' -%}
  {%- do steps.append({'sql': 'insert into ' ~ args.target_relation ~ ' (' ~ cols ~ ') select ' ~ cols ~ ' from ' ~ c.changes ~ " where sqlflow_action in ('update', 'insert')" ~ order, 'count': 'none'}) -%}
  {%- set counts = [] -%}
  {%- for action in ['delete', 'update', 'insert'] -%}
    {%- do counts.append("count(case when sqlflow_action = '" ~ action ~ "' then 1 end)") -%}
  {%- endfor -%}
  {%- do steps.append({'sql': 'select ' ~ ignored ~ counts | join(', ') ~ ' from ' ~ c.changes, 'count': ('ignored,' if ignored else '') ~ 'deleted,updated,inserted'}) -%}
  {{ return(steps) }}
{% endmacro %}


{#
  get_sqlflow_cdc_scd1_changes_sql(args): CREATE TEMPORARY TABLE plan.cdc.changes: one
  row per key of the batch. Events at or before the key's applied sequence (or the last
  applied truncate) are stale (sqlflow_ignored counts them); events at or before a
  truncate of the batch are wiped by it; of the others (fresh) the last by sequence wins
  (sqlflow_last_seq, sqlflow_last_op). With ignore_null_updates a NULL keeps the value of
  the last change, or of the target's row, since the key's last delete. sqlflow_action:
  insert, update, delete, forget (a delete of a key without a row: a tombstone only) or
  none (only stale events). The aggregates leave out the events that do not count by a
  NULL order or value (max, arg_max and arg_max_null skip a NULL order), not by FILTER:
  DuckDB's FILTER clauses cost about a third of this statement at 300K events a batch.
  Returns: SQL (one statement).
#}
{% macro get_sqlflow_cdc_scd1_changes_sql(args) %}
  {{ return(adapter.dispatch('get_sqlflow_cdc_scd1_changes_sql', 'dbt')(args)) }}
{% endmacro %}

{% macro sqlflow__get_sqlflow_cdc_scd1_changes_sql(args) %}
  {%- set c = args.plan.cdc -%}
  {%- set keys = c.key | join(', ') -%}
  {%- set batch_mark = "(select max(sqlflow_seq) from " ~ args.temp_relation ~ " where sqlflow_op = 'truncate')" -%}
  {%- set live = "(k.sqlflow_applied_op = 'upsert' and coalesce(k.sqlflow_applied > " ~ batch_mark ~ ", true))" -%}
  create or replace temporary table {{ c.changes }} as
  with ev as (
    {#- a STRUCT order is named (DuckDB 1.5 refused an unnamed one where a table held it) #}
    select s.*, {{ c.order }} as sqlflow_order,
           l.sqlflow_seq as sqlflow_applied, l.sqlflow_op as sqlflow_applied_op,
           coalesce(s.sqlflow_seq <= l.sqlflow_seq, false)
             or coalesce(s.sqlflow_seq <= (select max(sqlflow_seq) from {{ c.ledger }} where sqlflow_op = 'truncate'), false) as sqlflow_stale
    from {{ args.temp_relation }} as s
    left join {{ c.ledger }} as l on {{ sqlflow_cdc_key_join(args.plan, 'l', 's') }} and l.sqlflow_op <> 'truncate'
    where s.sqlflow_op <> 'truncate'
  ),
  fresh as (
    select *, not sqlflow_stale and coalesce(sqlflow_seq > {{ batch_mark }}, true) as sqlflow_fresh,
    {%- if c.ignore_nulls %}
           max(case when sqlflow_op = 'delete' and not sqlflow_stale then sqlflow_order end) over (partition by {{ keys }}) as sqlflow_reset
    {%- else %}
           {#- only ignore_null_updates needs the last delete per key (a window: a sort) #}
           null as sqlflow_reset
    {%- endif %}
    from ev
  ),
  keyed as (
    select {{ keys }},
           count(case when sqlflow_stale then 1 end) as sqlflow_ignored,
           {#- the last event's sequence: the greatest, as the order's first part #}
           max(case when sqlflow_fresh then sqlflow_seq end) as sqlflow_last_seq,
           arg_max(sqlflow_op, case when sqlflow_fresh then sqlflow_order end) as sqlflow_last_op,
           {%- if c.ignore_nulls %}
           max(case when sqlflow_fresh then sqlflow_reset end) is not null as sqlflow_was_reset,
           {%- endif %}
           {#- one ledger row per key: grouped by, not aggregated #}
           sqlflow_applied, sqlflow_applied_op
           {%- for col in c.value_columns %},
             {%- if col in c.ignore_nulls %}
           arg_max({{ col }}, case when sqlflow_fresh and sqlflow_op = 'upsert' and (sqlflow_reset is null or sqlflow_order > sqlflow_reset) then sqlflow_order end) as {{ col }}
             {%- else %}
           arg_max_null({{ col }}, case when sqlflow_fresh then sqlflow_order end) as {{ col }}
             {%- endif %}
           {%- endfor %}
    from fresh group by all
  )
  select k.*
    {%- if c.ignore_nulls %} replace (
      {%- for col in c.ignore_nulls %}
         coalesce(k.{{ col }}, case when {{ live }} and not k.sqlflow_was_reset then t.{{ col }} end) as {{ col }}{{ ',' if not loop.last }}
      {%- endfor %})
    {%- endif %},
         case when k.sqlflow_last_op is null then 'none'
              when k.sqlflow_last_op = 'delete' then case when {{ live }} then 'delete' else 'forget' end
              when {{ live }} then 'update' else 'insert' end as sqlflow_action
  from keyed as k
  {%- if c.ignore_nulls %}
  left join {{ args.target_relation }} as t on {{ sqlflow_cdc_key_join(args.plan, 't', 'k') }}
  {%- endif %}
{% endmacro %}


{#
  get_sqlflow_cdc_scd1_truncate_sql(args): a truncate in the batch deletes every row
  whose key's applied sequence lies before it (its count: deleted).
  Returns: SQL (one DELETE).
#}
{% macro get_sqlflow_cdc_scd1_truncate_sql(args) %}
  {{ return(adapter.dispatch('get_sqlflow_cdc_scd1_truncate_sql', 'dbt')(args)) }}
{% endmacro %}

{% macro sqlflow__get_sqlflow_cdc_scd1_truncate_sql(args) %}
  {%- set c = args.plan.cdc -%}
  delete from {{ args.target_relation }} as t
  where exists (select 1 from {{ args.temp_relation }} where sqlflow_op = 'truncate')
    and not exists (
      select 1 from {{ c.ledger }} as l
      where {{ sqlflow_cdc_key_join(args.plan, 'l', 't') }} and l.sqlflow_op = 'upsert'
        and l.sqlflow_seq > (select max(sqlflow_seq) from {{ args.temp_relation }} where sqlflow_op = 'truncate'))
{% endmacro %}


{#
  get_sqlflow_cdc_scd2_events_sql(args): CREATE TEMPORARY TABLE plan.cdc.events: every
  change of the keys the batch touches (its events' keys, and the keys whose version
  spans a truncate of the batch), as events: the known ones rebuilt from the target's
  versions (an upsert at each dbt_valid_from, a delete at a dbt_valid_to no version
  starts at), the ledger's tombstones, truncates and upserts taken in place (with their
  version's values; sqlflow_full: rows of whole values),
  and the batch's. A batch event whose key and sequence are known is ignored.
  Returns: SQL (one statement).
#}
{% macro get_sqlflow_cdc_scd2_events_sql(args) %}
  {{ return(adapter.dispatch('get_sqlflow_cdc_scd2_events_sql', 'dbt')(args)) }}
{% endmacro %}

{% macro sqlflow__get_sqlflow_cdc_scd2_events_sql(args) %}
  {%- set c = args.plan.cdc -%}
  {%- set keys = c.key | join(', ') -%}
  {%- set vf, vt = c.valid_from, c.valid_to -%}
  {%- set kcols = [] -%}{%- for k in c.key -%}{%- do kcols.append('k.' ~ k) -%}{%- endfor -%}
  {%- set hcols = [] -%}{%- for col in c.columns -%}{%- do hcols.append('h.' ~ col) -%}{%- endfor -%}
  {%- set flags = "1 as sqlflow_rank, 'delete' as sqlflow_op, true as sqlflow_full" -%}
  create or replace temporary table {{ c.events }} as
  with truncates as (
    select distinct sqlflow_seq from {{ args.temp_relation }} where sqlflow_op = 'truncate'
  ),
  touched as (
    select {{ keys }} from {{ args.temp_relation }} where sqlflow_op <> 'truncate'
    union
    select {{ keys }} from {{ args.target_relation }} as t
    where exists (select 1 from truncates as m where t.{{ vf }} < m.sqlflow_seq and (t.{{ vt }} is null or t.{{ vt }} > m.sqlflow_seq))
  ),
  hist as (
    select t.* from {{ args.target_relation }} as t semi join touched as k on {{ sqlflow_cdc_key_join(args.plan, 't', 'k') }}
  ),
  known as (
    select {{ c.columns | join(', ') }}, {{ vf }} as sqlflow_seq, 1 as sqlflow_rank, 'upsert' as sqlflow_op, true as sqlflow_full
    from hist
    union all by name
    select {{ keys }}, h.{{ vt }} as sqlflow_seq, {{ flags }} from hist as h
    where h.{{ vt }} is not null
      and not exists (select 1 from hist as n where {{ sqlflow_cdc_key_join(args.plan, 'n', 'h') }} and n.{{ vf }} = h.{{ vt }})
    union all by name
    select {{ keys }}, l.sqlflow_seq, {{ flags }} from {{ c.ledger }} as l
    semi join touched as k on {{ sqlflow_cdc_key_join(args.plan, 'l', 'k') }} where l.sqlflow_op = 'delete'
    union all by name
    select {{ kcols | join(', ') }}, m.sqlflow_seq, {{ flags }}
    from touched as k cross join (select sqlflow_seq from {{ c.ledger }} where sqlflow_op = 'truncate') as m
    union all by name
    {#- the upserts a version took in place, with the version's values #}
    select {{ hcols | join(', ') }}, l.sqlflow_seq, 1 as sqlflow_rank, 'upsert' as sqlflow_op, true as sqlflow_full
    from {{ c.ledger }} as l join hist as h on {{ sqlflow_cdc_key_join(args.plan, 'l', 'h') }}
      and h.{{ vf }} < l.sqlflow_seq and (h.{{ vt }} is null or l.sqlflow_seq < h.{{ vt }})
    where l.sqlflow_op = 'upsert'
  ),
  new as (
    select {{ c.columns | join(', ') }}, sqlflow_seq, sqlflow_rank, sqlflow_op, false as sqlflow_full
    from {{ args.temp_relation }} where sqlflow_op <> 'truncate'
    union all by name
    select {{ kcols | join(', ') }}, m.sqlflow_seq, {{ flags }} from touched as k cross join truncates as m
  )
  select n.*, exists (
      select 1 from known as o where {{ sqlflow_cdc_key_join(args.plan, 'o', 'n') }} and o.sqlflow_seq = n.sqlflow_seq
    ) as sqlflow_ignored
  from new as n
  union all by name
  select *, false as sqlflow_ignored from known
{% endmacro %}


{#
  get_sqlflow_cdc_scd2_changes_sql(args): CREATE TEMPORARY TABLE plan.cdc.changes: the
  versions of the touched keys rebuilt from plan.cdc.events in sequence order, against
  the target's. An upsert starts a version when the key is not live or a tracked column
  changed (else it updates the version in place); a delete closes it. With
  ignore_null_updates a NULL keeps the value since the last delete or known version.
  sqlflow_action per version: insert, update (closed or changed), delete (no longer a
  version: history rewritten), same; sqlflow_old_from is the target version's start.
  Returns: SQL (one statement).
#}
{% macro get_sqlflow_cdc_scd2_changes_sql(args) %}
  {{ return(adapter.dispatch('get_sqlflow_cdc_scd2_changes_sql', 'dbt')(args)) }}
{% endmacro %}

{% macro sqlflow__get_sqlflow_cdc_scd2_changes_sql(args) %}
  {%- set c = args.plan.cdc -%}
  {%- set keys = c.key | join(', ') -%}
  {%- set vf, vt = c.valid_from, c.valid_to -%}
  {%- set w = 'partition by ' ~ keys ~ ' order by sqlflow_seq, sqlflow_rank, sqlflow_op rows between unbounded preceding and current row' -%}
  {%- set tracked = 'row(' ~ c.tracked | join(', ') ~ ')' if c.tracked else 'null' -%}
  {%- set differs = [] -%}
  {%- for col in c.value_columns + [vt] -%}{%- do differs.append('n.' ~ col ~ ' is distinct from o.' ~ col) -%}{%- endfor -%}
  create or replace temporary table {{ c.changes }} as
  with grouped as (
    select *, sum(case when sqlflow_op = 'delete' or sqlflow_full then 1 else 0 end) over ({{ w }}) as sqlflow_grp
    from {{ c.events }} where not sqlflow_ignored
  ),
  filled as (
    select * {%- if c.ignore_nulls %} replace (
      {%- for col in c.ignore_nulls %}
      case when sqlflow_full then {{ col }} else last_value({{ col }} ignore nulls) over (partition by {{ keys }}, sqlflow_grp order by sqlflow_seq, sqlflow_rank, sqlflow_op rows between unbounded preceding and current row) end as {{ col }}{{ ',' if not loop.last }}
      {%- endfor %})
    {%- endif %}
    from grouped
  ),
  marked as (
    select *, sqlflow_op = 'upsert' and (lag(sqlflow_op) over w is distinct from 'upsert'
                                         or lag({{ tracked }}) over w is distinct from {{ tracked }}) as sqlflow_starts
    from filled window w as (partition by {{ keys }} order by sqlflow_seq, sqlflow_rank, sqlflow_op)
  ),
  numbered as (
    select *, sum(case when sqlflow_starts then 1 else 0 end) over ({{ w }}) as sqlflow_vid from marked
  ),
  versions as (
    select {{ keys }}, sqlflow_vid,
           min(case when sqlflow_starts then sqlflow_seq end) as {{ vf }},
           min(case when sqlflow_op = 'delete' then sqlflow_seq end) as sqlflow_closed
           {%- for col in c.value_columns %},
           arg_max_null({{ col }}, case when sqlflow_op = 'upsert' then row(sqlflow_seq, sqlflow_rank) end) as {{ col }}
           {%- endfor %}
    from numbered where sqlflow_vid > 0 group by all
  ),
  rebuilt as (
    select *, coalesce(sqlflow_closed, lead({{ vf }}) over (partition by {{ keys }} order by sqlflow_vid)) as {{ vt }}
    from versions
  ),
  old as (
    select t.* from {{ args.target_relation }} as t
    semi join (select distinct {{ keys }} from {{ c.events }}) as k on {{ sqlflow_cdc_key_join(args.plan, 't', 'k') }}
  )
  select {% for k in c.key %}coalesce(n.{{ k }}, o.{{ k }}) as {{ k }}, {% endfor -%}
         {% for col in c.value_columns %}n.{{ col }}, {% endfor -%}
         n.{{ vf }}, n.{{ vt }}, o.{{ vf }} as sqlflow_old_from,
         case when o.{{ vf }} is null then 'insert' when n.{{ vf }} is null then 'delete'
              when {{ differs | join(' or ') }} then 'update' else 'same' end as sqlflow_action
  from rebuilt as n
  full join old as o on {{ sqlflow_cdc_key_join(args.plan, 'n', 'o') }} and n.{{ vf }} = o.{{ vf }}
{% endmacro %}
