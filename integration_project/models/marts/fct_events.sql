{{ config(materialized='incremental', incremental_strategy='merge', unique_key='event_id') }}
select * from {{ ref('stg_events') }}
{% if is_incremental() %}
where event_ts >= (select max(event_ts) - interval 1 day from {{ this }})
{% endif %}
