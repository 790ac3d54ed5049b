{#
  Web events, one row per event, in day partitions on event_ts.

  insert_overwrite replaces whole days: each run reloads the days of its window, so late
  events land in the day they belong to. The first build runs in monthly batches
  (batch_size='month'); each later run re-reads the month before the last loaded end
  (lookback=1: every month that holds part of it, e.g. November and December for a last
  load up to 31 December 18:00) plus the current month.
#}
{{
  config(
    incremental_strategy='insert_overwrite',
    partition_by={'field': 'event_ts', 'granularity': 'day'},
    batch_size='month',
    lookback=1,
    quality_checks=[
      {'not_null': ['event_id', 'event_ts', 'customer_id']},
      {'accepted_values': {'column': 'event_type',
                           'values': ['page_view', 'search', 'add_to_cart', 'purchase']}},
      {'expression': "(event_type = 'purchase') = (revenue is not null)"},
      {'row_count': {'min': 1}},
      {'partition_consistency': true},
      {'expression': "arrived_at < event_ts + interval 2 day", 'severity': 'warn'},
    ],
  )
}}
select
    event_id,
    event_ts,
    arrived_at,
    customer_id,
    session_id,
    event_type,
    page,
    revenue
from {{ ref('stg_events') }}
where event_ts >= {{ sqlflow_window_start() }}
  and event_ts < {{ sqlflow_window_end() }}
