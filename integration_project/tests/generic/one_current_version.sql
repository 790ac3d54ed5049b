{#
  one_current_version: every key of an SCD2 history table has exactly one current version
  (dbt_valid_to is null). Returns the keys with none or several.
#}
{% test one_current_version(model, column_name) %}
select {{ column_name }}, count(*) filter (where dbt_valid_to is null) as current_versions
from {{ model }}
group by {{ column_name }}
having count(*) filter (where dbt_valid_to is null) <> 1
{% endtest %}
