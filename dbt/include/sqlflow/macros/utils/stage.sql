{#
  get_sqlflow_stage_sql(relation, sql, plan, batch, temporary): CREATE TABLE AS of one
  batch of the model (get_sqlflow_batch_select_sql); for the cdc strategy each event as
  its normalised row (plan.cdc.stage_select: the target's columns, sqlflow_seq,
  sqlflow_rank, sqlflow_op).
  Arguments: batch is none or {start_literal, end_literal} (SQL literals).
  Returns: SQL (one statement).
#}
{% macro get_sqlflow_stage_sql(relation, sql, plan, batch, temporary) %}
  {{ return(adapter.dispatch('get_sqlflow_stage_sql', 'dbt')(relation, sql, plan, batch, temporary)) }}
{% endmacro %}

{% macro sqlflow__get_sqlflow_stage_sql(relation, sql, plan, batch, temporary) %}
  create or replace {% if temporary %}temporary {% endif %}table {{ relation }} as
  {%- if plan.cdc %}
  select {{ plan.cdc.stage_select }} from (
    {{ get_sqlflow_batch_select_sql(sql, plan, batch) }}
  ) as sqlflow_feed
  {%- else %}
  {{ get_sqlflow_batch_select_sql(sql, plan, batch) }}
  {%- endif %}
{% endmacro %}

{#
  get_sqlflow_batch_select_sql(sql, plan, batch): the SELECT of one batch of the model:
  restricted to the batch's window on event_time, deduplicated by unique_key keeping the
  last rows by dedupe_by (all rows tied for last: the key check collapses equal ones and
  refuses a key whose tied rows differ), in partition/event_time order.
  Returns: SQL (a SELECT).
#}
{% macro get_sqlflow_batch_select_sql(sql, plan, batch) %}
  {{ return(adapter.dispatch('get_sqlflow_batch_select_sql', 'dbt')(sql, plan, batch)) }}
{% endmacro %}

{% macro sqlflow__get_sqlflow_batch_select_sql(sql, plan, batch) %}
  {%- set keys = plan.unique_key | join(', ') -%}
  select * from (
    {{ sql }}
  ) as sqlflow_model
  {%- if batch %}
  where {{ plan.event_time }} >= {{ batch.start_literal }} and {{ plan.event_time }} < {{ batch.end_literal }}
  {%- endif %}
  {%- if plan.dedupe_by %}
  {#- rows with a null key are all kept, so the key check can count and refuse them; so
      are the rows tied for last by dedupe_by (a running count(*) counts the order's
      peers), which the key check collapses when they are equal and refuses otherwise #}
  qualify ({{ plan.unique_key | join(' is null or ') }} is null)
       or count(*) over (partition by {{ keys }} order by {{ plan.dedupe_by | join(', ') }})
        = count(*) over (partition by {{ keys }})
  {%- endif %}
  {%- if plan.order_by %}
  order by {{ plan.order_by }}
  {%- endif %}
{% endmacro %}

{#
  get_sqlflow_stage_shape_sql(relation, columns): CREATE TEMPORARY TABLE with the columns
  of the model's batches and no rows (schema changes and column lists are read from it),
  from the model's described columns: the model's query does not run.
  Arguments: columns, plan.batch_columns ([{name (quoted), type}]).
  Returns: SQL (one statement).
#}
{% macro get_sqlflow_stage_shape_sql(relation, columns) %}
  {{ return(adapter.dispatch('get_sqlflow_stage_shape_sql', 'dbt')(relation, columns)) }}
{% endmacro %}

{% macro sqlflow__get_sqlflow_stage_shape_sql(relation, columns) %}
  create or replace temporary table {{ relation }} (
    {%- for column in columns %}
    {{ column.name }} {{ column.type }}{{ ',' if not loop.last }}
    {%- endfor %}
  )
{% endmacro %}
