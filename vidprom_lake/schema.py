"""Arrow schemas of the lake's tables, and their version.

The schemas are declared here once; `lake.py` creates the tables from them and every writer
conforms its batches to them (`conform`). Enrichment columns are part of the declared schema
and nullable, except vector columns, whose dimension is only known when the first vectors
arrive: `vector_field` builds those, and they are added to the table on demand.
"""

from __future__ import annotations

import json

import pyarrow as pa

#: Bump when a declared schema changes; stored in every table's schema metadata.
SCHEMA_VERSION = "1"

#: The six NSFW probabilities VidProM ships (Detoxify `unbiased` / `multilingual` labels).
NSFW_LABELS: tuple[str, ...] = (
    "toxicity",
    "obscene",
    "identity_attack",
    "insult",
    "threat",
    "sexual_explicit",
)

TABLES: tuple[str, ...] = ("prompts", "videos", "batches")

FLAGS_TYPE = pa.struct(
    [
        pa.field("aspect_ratio", pa.string()),
        pa.field("motion", pa.int32()),
        pa.field("guidance", pa.float32()),
        pa.field("negative", pa.string()),
        pa.field("camera", pa.string()),
        pa.field("fps", pa.int32()),
        pa.field("seed", pa.int64()),
    ]
)

TIME_TYPE = pa.timestamp("us", tz="UTC")

# The two long text columns are stored without Lance's string compression (FSST): writing
# them costs ~0.9 CPU s less per 1.67M prompts and scans of them (length, words) run ~1.3-1.6x
# faster, for ~55% more disk on this table (292 -> 451 MB at 1.67M prompts). The uuids too:
# FSST saves 27 MB of their 67 MB at 1.67M rows and costs ~0.3 CPU s to write.
PLAIN_TEXT = {"lance-encoding:compression": "none"}

_PROMPT_FIELDS = [
    pa.field("uuid", pa.string(), nullable=False, metadata=PLAIN_TEXT),
    pa.field("prompt", pa.string(), nullable=False, metadata=PLAIN_TEXT),
    pa.field("prompt_clean", pa.string(), metadata=PLAIN_TEXT),
    pa.field("time", TIME_TYPE),
    pa.field("source", pa.string()),
    pa.field("source_id", pa.string()),  # the source's own id (message id, image name, clip id)
    pa.field("channel", pa.string()),  # where it was collected (Discord channel, file part)
    pa.field("author_sha256", pa.string()),  # salted or plain SHA-256 of the author; never raw
    pa.field("occurrences", pa.int64()),
    pa.field("uuid_mismatch", pa.bool_()),
    pa.field("flags", FLAGS_TYPE),
    pa.field("extra", pa.string()),  # JSON object of source columns the schema has no place for
    pa.field("batch_id", pa.string()),
    *[pa.field(label, pa.float32()) for label in NSFW_LABELS],
    pa.field("nsfw_model", pa.string()),
    pa.field("unique_semantic", pa.bool_()),
    pa.field("dup_of", pa.string()),
    pa.field("dup_similarity", pa.float32()),
    pa.field("dedup_run", pa.string()),
]

VIDEO_BLOB_COLUMN = "video"

_VIDEO_FIELDS = [
    pa.field("video_id", pa.string(), nullable=False),  # "{model}-{uuid}"
    pa.field("uuid", pa.string(), nullable=False),
    pa.field("model", pa.string(), nullable=False),
    pa.field("source", pa.string()),
    pa.field(
        VIDEO_BLOB_COLUMN, pa.large_binary(), metadata={"lance-encoding:blob": "true"}
    ),
    pa.field("codec", pa.string()),
    pa.field("width", pa.int32()),
    pa.field("height", pa.int32()),
    pa.field("fps", pa.float32()),
    pa.field("num_frames", pa.int32()),
    pa.field("duration_s", pa.float32()),
    pa.field("bytes", pa.int64()),
    pa.field("sha256", pa.string()),
    pa.field("thumbnail", pa.binary()),  # small JPEG/PNG preview, not a blob
    pa.field("params", pa.string()),  # JSON: generation or import parameters
    pa.field("time", TIME_TYPE),
    pa.field("batch_id", pa.string()),
]

_BATCH_FIELDS = [
    pa.field("batch_id", pa.string(), nullable=False),
    pa.field("seq", pa.int32(), nullable=False),
    pa.field("status", pa.string(), nullable=False),  # running|chunk|committed|failed|aborted
    pa.field("kind", pa.string()),
    pa.field("source", pa.string()),
    pa.field("source_sha256", pa.string()),
    pa.field("params", pa.string()),  # JSON, secrets removed
    pa.field("counts", pa.string()),  # JSON
    pa.field("versions", pa.string()),  # JSON {table: lance version}
    pa.field("provenance", pa.string()),  # JSON: library versions, model ids
    pa.field("message", pa.string()),
    pa.field("started_at", TIME_TYPE),
    pa.field("time", TIME_TYPE),
    pa.field("pid", pa.int64()),
]


def _with_meta(fields: list[pa.Field], table: str) -> pa.Schema:
    return pa.schema(
        fields,
        metadata={"vidlake:schema_version": SCHEMA_VERSION, "vidlake:table": table},
    )


PROMPTS_SCHEMA = _with_meta(_PROMPT_FIELDS, "prompts")
VIDEOS_SCHEMA = _with_meta(_VIDEO_FIELDS, "videos")
BATCHES_SCHEMA = _with_meta(_BATCH_FIELDS, "batches")

SCHEMAS: dict[str, pa.Schema] = {
    "prompts": PROMPTS_SCHEMA,
    "videos": VIDEOS_SCHEMA,
    "batches": BATCHES_SCHEMA,
}

VECTOR_DTYPES = {"float32": pa.float32(), "float16": pa.float16()}


def vector_field(name: str, dim: int, dtype: str = "float32", **provenance: object) -> pa.Field:
    """A fixed-size vector column; provenance (model id, dims, ...) rides in field metadata."""
    if dtype not in VECTOR_DTYPES:
        raise ValueError(f"vector dtype must be one of {sorted(VECTOR_DTYPES)}, not {dtype!r}")
    meta = {"vidlake:vector": "true", "vidlake:dims": str(dim), "vidlake:dtype": dtype}
    meta.update({f"vidlake:{k}": json.dumps(v) if not isinstance(v, str) else v
                 for k, v in provenance.items()})
    return pa.field(name, pa.list_(VECTOR_DTYPES[dtype], dim), metadata=meta)


def is_vector_field(field: pa.Field) -> bool:
    return pa.types.is_fixed_size_list(field.type)


def field_meta(field: pa.Field) -> dict[str, str]:
    return {k.decode(): v.decode() for k, v in (field.metadata or {}).items()}


def conform(batch: pa.RecordBatch | pa.Table, schema: pa.Schema) -> pa.RecordBatch:
    """Reorder/cast a batch to `schema`, filling absent nullable columns with nulls."""
    n = batch.num_rows
    arrays = []
    for field in schema:
        if field.name in batch.schema.names:
            col = batch.column(batch.schema.get_field_index(field.name))
            if isinstance(col, pa.ChunkedArray):
                col = col.combine_chunks()
            if not col.type.equals(field.type):
                col = col.cast(field.type)
            arrays.append(col)
        else:
            if not field.nullable:
                raise ValueError(f"column {field.name!r} is required")
            arrays.append(pa.nulls(n, field.type))
    return pa.RecordBatch.from_arrays(arrays, schema=schema)
