select
    event_id,
    event_ts,
    arrived_at,
    customer_id,
    session_id,
    event_type,
    page,
    revenue
from {{ source('raw', 'events') }}
