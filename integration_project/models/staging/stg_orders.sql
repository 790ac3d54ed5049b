select
    order_id,
    customer_id,
    ordered_at,
    status,
    amount,
    updated_at,
    loaded_at
from {{ source('raw', 'orders') }}
