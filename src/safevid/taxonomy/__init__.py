"""The safety taxonomy: risk domains, subcategories with their rules, severity levels and query styles.

The packaged default lives in ``safevid_taxonomy_v1.yaml``; pass the path of your own file (same schema)
anywhere a taxonomy is accepted.
"""

from safevid.taxonomy.taxonomy import (
    DEFAULT_TAXONOMY_FILE,
    SUPPORTED_VERSIONS,
    Domain,
    QueryStyle,
    Rule,
    SeverityLevel,
    Subcategory,
    Taxonomy,
    TaxonomyError,
    load_taxonomy,
)

__all__ = [
    "DEFAULT_TAXONOMY_FILE",
    "SUPPORTED_VERSIONS",
    "Domain",
    "QueryStyle",
    "Rule",
    "SeverityLevel",
    "Subcategory",
    "Taxonomy",
    "TaxonomyError",
    "load_taxonomy",
]
