{#
  Orders, one row per order with its latest status.

  The feed holds one row per status change (and replays some): each run merges the rows
  that arrived since the last one, keeping the newest per order (dedupe_by).
#}
{{
  config(
    incremental_strategy='merge',
    unique_key='order_id',
    dedupe_by=['updated_at', 'loaded_at'],
    quality_checks=[
      {'not_null': ['order_id', 'customer_id', 'status']},
      {'accepted_values': {'column': 'status',
                           'values': ['placed', 'cancelled', 'shipped', 'delivered', 'returned']}},
      {'expression': 'amount > 0'},
      {'expression': 'updated_at >= ordered_at'},
      {'unique': ['order_id']},
    ],
  )
}}
select
    order_id,
    customer_id,
    ordered_at,
    status,
    amount,
    updated_at,
    loaded_at
from {{ ref('stg_orders') }}
{% if is_incremental() %}
where loaded_at > (select max(loaded_at) from {{ this }})
{% endif %}
