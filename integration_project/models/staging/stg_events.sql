select event_id, event_ts, customer_id, event_type, amount
from {{ source('raw', 'events') }}
