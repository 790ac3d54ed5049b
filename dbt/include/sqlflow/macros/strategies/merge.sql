{#
  get_sqlflow_merge_sql(args): merge the staged batch on unique_key; a batch whose keys
  are all new (facts.plain_insert) is a plain INSERT. The target side is restricted by
  facts.target_predicate (the batch's partition range) when there is one.
  facts.merge_form (decided in Python, strategies.merge_form) chooses the statements:
  'delete_insert' when every column of every matched row is replaced: a keyed DELETE of
  the matched rows plus an INSERT (the same rows as MERGE ... UPDATE, but DuckDB only
  marks deleted rows where an UPDATE rewrites every row group it touches); 'replaced'
  counts the matched rows as updated (and refuses a target whose key is not unique),
  'upserted' the rest of the insert as inserted. 'merge': MERGE ... UPDATE/INSERT
  ('merged' splits into updated and inserted); 'insert_only': a MERGE that only inserts.
  Returns: a list of {sql, count} steps.
#}
{% macro get_sqlflow_merge_sql(args) %}
  {{ return(adapter.dispatch('get_sqlflow_merge_sql', 'dbt')(args)) }}
{% endmacro %}

{% macro sqlflow__get_sqlflow_merge_sql(args) %}
  {%- if args.facts.plain_insert -%}
    {{ return(get_sqlflow_append_sql(args)) }}
  {%- endif -%}
  {%- set plan = args.plan -%}
  {%- set cols = args.dest_columns | map(attribute='name') | list -%}
  {%- set update_cols = get_merge_update_columns(plan.merge_update_columns or none, plan.merge_exclude_columns or none, args.dest_columns) -%}
  {%- set keys_lower = plan.unique_key_names | map('lower') | list -%}
  {%- set predicates = [] -%}
  {%- for key in plan.unique_key -%}
    {%- do predicates.append('DBT_INTERNAL_DEST.' ~ key ~ ' = DBT_INTERNAL_SOURCE.' ~ key) -%}
  {%- endfor -%}
  {%- if args.facts.target_predicate -%}{%- do predicates.append(args.facts.target_predicate) -%}{%- endif -%}
  {%- for p in args.incremental_predicates -%}{%- do predicates.append(p) -%}{%- endfor -%}
  {%- if args.facts.merge_form == 'delete_insert' -%}
    {%- set delete_sql -%}
  delete from {{ args.target_relation }} as DBT_INTERNAL_DEST
  using {{ args.temp_relation }} as DBT_INTERNAL_SOURCE
  where ({{ predicates | join(') and (') }})
    {%- endset -%}
    {{ return([
        {'sql': delete_sql, 'count': 'replaced'},
        {'sql': get_sqlflow_insert_sql(args.target_relation, args.temp_relation, args.dest_columns), 'count': 'upserted'}
    ]) }}
  {%- endif -%}
  {%- set updates = [] -%}
  {%- for col in update_cols if col.replace('"', '') | lower not in keys_lower -%}
    {%- do updates.append(col ~ ' = DBT_INTERNAL_SOURCE.' ~ col) -%}
  {%- endfor -%}
  {%- set sql -%}
  merge into {{ args.target_relation }} as DBT_INTERNAL_DEST
  using {{ args.temp_relation }} as DBT_INTERNAL_SOURCE
  on ({{ predicates | join(') and (') }})
  {%- if args.facts.merge_form == 'merge' %}
  when matched then update set {{ updates | join(', ') }}
  {%- endif %}
  when not matched then insert ({{ get_quoted_csv(cols) }})
    values ({% for c in cols %}DBT_INTERNAL_SOURCE.{{ adapter.quote(c) }}{{ ', ' if not loop.last }}{% endfor %})
  {%- endset -%}
  {#- without an update clause the MERGE only inserts: its count is all inserts #}
  {{ return([{'sql': sql, 'count': 'merged' if args.facts.merge_form == 'merge' else 'inserted'}]) }}
{% endmacro %}
