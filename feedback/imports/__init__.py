"""Bring data into a project: prompts (JSONL, CSV, JSON list) and existing pairwise labels.

Every import is all or nothing: the whole file is parsed and validated first, every problem is
collected with its line and field, and only a file without problems is written, in one
transaction. Duplicates (inside the file, or of prompts the project already has) are problems
unless the caller chooses to skip them; skipped duplicates are reported.

Line numbers: for JSONL and CSV the physical line of the file (a CSV header is line 1); for a
JSON list the position of the item in the list (1-based). Line 0 is the file as a whole.

- `files`: formats, JSON as Hone takes it from outside, problems;
- `prompts`: prompts into a project;
- `label_studio`: pairwise labels from a Label Studio export;
- `demonstrations`: demonstrations in TRL's SFT formats.
"""

from feedback.imports.demonstrations import (
    DEMONSTRATION_FORMATS,
    DemonstrationImportResult,
    demonstrations_import_file,
    demonstrations_import_records,
)
from feedback.imports.files import (
    DUPLICATES,
    FORMATS,
    IMPORTABLE_SPLITS,
    MAX_JSON_DEPTH,
    MAX_LEAD_SECONDS,
    MAX_PROMPT_CHARS,
    VALID_ROLES,
    FileRejected,
    Problem,
    detect_format,
    json_loads,
    records_from_bytes,
)
from feedback.imports.label_studio import (
    IMPORTED_USER_PREFIX,
    LabelImportResult,
    LabelStudioMapping,
    imported_annotator,
    imported_username,
    labels_import_file,
)
from feedback.imports.prompts import (
    PromptImportResult,
    has_nul,
    prompt_key,
    prompt_messages,
    prompts_import_file,
    prompts_import_records,
)

__all__ = [
    "DEMONSTRATION_FORMATS",
    "DUPLICATES",
    "DemonstrationImportResult",
    "FORMATS",
    "FileRejected",
    "IMPORTABLE_SPLITS",
    "IMPORTED_USER_PREFIX",
    "LabelImportResult",
    "LabelStudioMapping",
    "MAX_JSON_DEPTH",
    "MAX_LEAD_SECONDS",
    "MAX_PROMPT_CHARS",
    "Problem",
    "PromptImportResult",
    "VALID_ROLES",
    "demonstrations_import_file",
    "demonstrations_import_records",
    "detect_format",
    "has_nul",
    "imported_annotator",
    "imported_username",
    "json_loads",
    "labels_import_file",
    "prompt_key",
    "prompt_messages",
    "prompts_import_file",
    "prompts_import_records",
    "records_from_bytes",
]
