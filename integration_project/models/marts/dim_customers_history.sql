{#
  Customer history (SCD type 2): a new version whenever updated_at moves, a deletion
  record when a customer disappears from the source, a new version when it comes back.
#}
{{
  config(
    incremental_strategy='snapshot',
    unique_key='customer_id',
    snapshot={'strategy': 'timestamp', 'updated_at': 'updated_at'},
    hard_deletes='new_record',
    quality_checks=[
      {'not_null': ['customer_id', 'email', 'updated_at']},
      {'accepted_values': {'column': 'tier', 'values': ['free', 'silver', 'gold', 'platinum']}},
      {'expression': "email like '%@%'"},
    ],
  )
}}
select
    customer_id,
    name,
    email,
    country,
    tier,
    created_at,
    updated_at
from {{ ref('stg_customers') }}
