select
    customer_id,
    name,
    lower(email) as email,
    country,
    tier,
    created_at,
    updated_at
from {{ source('raw', 'customers') }}
