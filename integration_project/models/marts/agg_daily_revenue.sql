{#
  Revenue by order day, from fct_orders, in day partitions.

  Orders change status after the fact (cancelled, returned), so each run recomputes the
  days of its window: the month before the last loaded end (lookback=1, in whole months)
  and the current month, reading only those orders through sqlflow_window_start()/sqlflow_window_end().
#}
{{
  config(
    incremental_strategy='insert_overwrite',
    partition_by={'field': 'order_date', 'granularity': 'day'},
    batch_size='month',
    lookback=1,
    quality_checks=[
      {'not_null': ['order_date', 'orders', 'revenue']},
      {'expression': 'revenue >= 0 and orders_kept <= orders'},
      {'partition_consistency': true},
    ],
  )
}}
select
    cast(ordered_at as date) as order_date,
    count(*) as orders,
    count(*) filter (where status not in ('cancelled', 'returned')) as orders_kept,
    coalesce(sum(amount) filter (where status not in ('cancelled', 'returned')), 0)
        ::decimal(18, 2) as revenue,
    count(*) filter (where status = 'cancelled') as orders_cancelled,
    count(*) filter (where status = 'returned') as orders_returned
from {{ ref('fct_orders') }}
where ordered_at >= {{ sqlflow_window_start() }}
  and ordered_at < {{ sqlflow_window_end() }}
group by all
