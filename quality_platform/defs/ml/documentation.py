"""model_documentation (F25): the generated documentation of the newest model version, after its
release gate; stored with the version in MLflow and linked from the materialisation."""

import dagster as dg
from dagster_duckdb import DuckDBResource

from quality_platform.defs._assets import CODE_VERSIONS, warehouse_path
from quality_platform.defs.ml import GROUP, OWNERS
from quality_platform.defs.ml.assets import latest_meta
from quality_platform.reports import model_docs as D
from quality_platform.resources import AuditLogResource, ModelRegistryResource, PlatformResource
from quality_platform.warehouse import WAREHOUSE_POOL


@dg.asset(
    name="model_documentation",
    group_name=GROUP,
    owners=["team:compliance", *OWNERS],
    kinds={"mlflow", "markdown"},
    deps=["defect_model", "model_evaluation"],
    pool=WAREHOUSE_POOL,
    code_version=CODE_VERSIONS["ml"],
    tags={"layer": "ml", "personal_data": "no"},
    description="Technical documentation of the newest model version, generated from evidence only: intended "
    "purpose, training data datasheet, metrics overall and per plant, known limitations (gate warnings, "
    "drift history), explanation summary, approvals, monitoring plan and the declared change envelope; "
    "each section with the sha256 of its evidence. Stored as MLflow artifacts of the version "
    "(docs/model_card.md, docs/evidence.json); `qp docs model VERSION` marks stale sections.",
)
def model_documentation(
    context: dg.AssetExecutionContext,
    platform: PlatformResource,
    warehouse: DuckDBResource,
    model_registry: ModelRegistryResource,
    audit_log: AuditLogResource,
) -> dg.MaterializeResult:
    paths = platform.paths()
    version = str(latest_meta(context.instance, "defect_model", "model_version"))
    reg = model_registry.registry(paths)
    audit = audit_log.log()
    doc = D.generate(
        paths,
        version,
        registry=reg,
        audit=audit,
        warehouse=warehouse_path(warehouse),
        definitions=context.repository_def,  # the plan of the code that runs
    )
    section_hashes = {k: s["sha256"] for k, s in doc.sections.items()}
    audit.append(
        "model_docs",
        "system:dagster",
        actor_kind="system",
        subject=f"model:{reg.name}/{version}",
        outcome="ok",
        reason="model documentation generated after the release gate",
        refs=reg.refs(
            model_version=version,
            run_id=context.run.run_id,
            artifact_uri=doc.artifact_uri,
            sections=section_hashes,
        ),
    )
    context.log.info(f"documentation of version {version}: {doc.artifact_uri}")
    return dg.MaterializeResult(
        metadata={
            "model_version": version,
            # where MLflow keeps it; a file path on the embedded default, a link with a tracking server
            "mlflow_artifact": dg.MetadataValue.url(doc.artifact_uri)
            if doc.artifact_uri.startswith("http")
            else dg.MetadataValue.path(doc.artifact_uri),
            "mlflow_run_id": reg.version(version).run_id,
            "mlflow_tracking_uri": reg.tracking_uri,
            "sections": dg.MetadataValue.json(section_hashes),
            # the whole document, readable in the UI (a browser cannot open a file:// artifact path
            # of the server's disk)
            "documentation": dg.MetadataValue.md(doc.markdown),
        }
    )
