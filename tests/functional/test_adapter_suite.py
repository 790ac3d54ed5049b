"""dbt's adapter test suite (dbt-tests-adapter) under ``type: sqlflow``."""

from __future__ import annotations

import pytest
from dbt.tests.adapter.basic.expected_catalog import base_expected_catalog, no_stats
from dbt.tests.adapter.basic.test_base import BaseSimpleMaterializations
from dbt.tests.adapter.basic.test_docs_generate import BaseDocsGenerate
from dbt.tests.adapter.basic.test_empty import BaseEmpty
from dbt.tests.adapter.basic.test_ephemeral import BaseEphemeral
from dbt.tests.adapter.basic.test_generic_tests import BaseGenericTests
from dbt.tests.adapter.basic.test_incremental import (
    BaseIncremental,
    BaseIncrementalNotSchemaChange,
)
from dbt.tests.adapter.basic.test_singular_tests import BaseSingularTests
from dbt.tests.adapter.basic.test_snapshot_check_cols import BaseSnapshotCheckCols
from dbt.tests.adapter.basic.test_snapshot_timestamp import BaseSnapshotTimestamp
from dbt.tests.adapter.basic.test_validate_connection import BaseValidateConnection
from dbt.tests.adapter.incremental.test_incremental_merge_exclude_columns import (
    BaseMergeExcludeColumns,
)
from dbt.tests.adapter.incremental.test_incremental_on_schema_change import (
    BaseIncrementalOnSchemaChange,
)
from dbt.tests.adapter.incremental.test_incremental_predicates import BaseIncrementalPredicates
from dbt.tests.adapter.incremental.test_incremental_unique_id import BaseIncrementalUniqueKey


class TestSimpleMaterializationsSqlflow(BaseSimpleMaterializations):
    pass


class TestEmptySqlflow(BaseEmpty):
    pass


class TestEphemeralSqlflow(BaseEphemeral):
    pass


class TestGenericTestsSqlflow(BaseGenericTests):
    pass


class TestSingularTestsSqlflow(BaseSingularTests):
    pass


class TestIncrementalSqlflow(BaseIncremental):
    pass


class TestIncrementalNotSchemaChangeSqlflow(BaseIncrementalNotSchemaChange):
    pass


class TestIncrementalUniqueKeySqlflow(BaseIncrementalUniqueKey):
    pass


class TestIncrementalPredicatesSqlflow(BaseIncrementalPredicates):
    pass


class TestIncrementalOnSchemaChangeSqlflow(BaseIncrementalOnSchemaChange):
    pass


class TestMergeExcludeColumnsSqlflow(BaseMergeExcludeColumns):
    pass


class TestSnapshotTimestampSqlflow(BaseSnapshotTimestamp):
    pass


class TestSnapshotCheckColsSqlflow(BaseSnapshotCheckCols):
    pass


class TestValidateConnectionSqlflow(BaseValidateConnection):
    pass


class TestDocsGenerateSqlflow(BaseDocsGenerate):
    @pytest.fixture(scope="class")
    def profile_user(self) -> str:
        # DuckDB has no users; the catalog's owner column is empty.
        return ""

    @pytest.fixture(scope="class")
    def expected_catalog(self, project, profile_user):
        return base_expected_catalog(
            project,
            role=None,
            id_type="INTEGER",
            text_type="VARCHAR",
            time_type="TIMESTAMP",
            view_type="VIEW",
            table_type="BASE TABLE",
            model_stats=no_stats(),
        )
