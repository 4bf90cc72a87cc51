"""`GET /openapi.json`: the whole HTTP contract (shared/API.md) as one OpenAPI 3.1 document, built
once at import from the model's own validation constants and served as precomputed bytes."""

from __future__ import annotations

from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from proxy.domain import access, model, rules, stats
from proxy.domain.model import DEFAULT_GOAL, MAX_USER_ID

Schema = dict[str, Any]

# --- Schema helpers ---------------------------------------------------------------------------


def ref(name: str) -> Schema:
    return {"$ref": f"#/components/schemas/{name}"}


def obj(properties: Schema, required: str = "", **extra: Any) -> Schema:
    """An object; `required` names its required properties, space-separated."""
    out: Schema = {"type": "object", "properties": properties, **extra}
    if required:
        out["required"] = required.split()
    return out


def record(properties: Schema, **extra: Any) -> Schema:
    """A stored record as returned: every property is always present."""
    return {"type": "object", "properties": properties, "required": list(properties), **extra}


def array(items: Schema, **extra: Any) -> Schema:
    return {"type": "array", "items": items, **extra}


def nullable(schema: Schema) -> Schema:
    return {"anyOf": [schema, {"type": "null"}]}


def envelope(data: Schema) -> Schema:
    """Every resource answer: `{"data": ...}`."""
    return obj({"data": data}, "data")


def matching(regex: Any, **extra: Any) -> Schema:
    """A string matching one of the model's compiled regexes (its text is ECMA-262 too)."""
    return {"type": "string", "pattern": regex.pattern, **extra}


def text(limit: int = 200) -> Schema:
    """A name: a string that is not blank, of at most `limit` characters."""
    # Python's str.strip() also strips \x1c-\x1f, which ECMA-262's \s does not name.
    return {"type": "string", "minLength": 1, "maxLength": limit, "pattern": r"[^\s\x1c-\x1f]"}


def percentage(*, whole: bool) -> Schema:
    if whole:
        return {"type": "integer", "minimum": 0, "maximum": 100}
    return {"type": "number", "minimum": 0, "maximum": 100, "multipleOf": 0.01}


ID = matching(model.UUID_RE)
NAME = matching(model.NAME_RE)
ENVIRONMENT = matching(model.NAME_RE, description="One of the project's environments.")
STRING: Schema = {"type": "string"}
STRING_OR_NULL: Schema = {"type": ["string", "null"]}
BOOLEAN: Schema = {"type": "boolean"}
COUNT: Schema = {"type": "integer", "minimum": 0}
TIME: Schema = {"type": "string", "format": "date-time"}
TIME_OR_NULL: Schema = {"type": ["string", "null"], "format": "date-time"}
ANY: Schema = {"description": "Any JSON value."}
FLAG_VALUE: Schema = {"description": "A value of the flag's `flag_type` (any JSON for `json`)."}
SCALAR: Schema = {"type": ["string", "number", "boolean"]}
DESCRIPTION = nullable({"type": "string", "maxLength": model.MAX_TEXT})
TAGS = nullable(array({"type": "string", "minLength": 1, "maxLength": 64}, maxItems=50))
POSITION: Schema = {"type": "integer", "minimum": 0, "maximum": 1_000_000}
MATCH_TYPE: Schema = {"enum": ["all", "any"]}
PROBABILITY: Schema = {"type": ["number", "null"], "minimum": 0, "maximum": 1}
NUMBER_OR_NULL: Schema = {"type": ["number", "null"]}
INTERVAL = nullable(array({"type": "number"}, minItems=2, maxItems=2))
GOAL = {**NAME, "default": DEFAULT_GOAL}
ADJUSTED: Schema = {
    **PROBABILITY,
    "description": "The p-value after the experiment's correction; null without one.",
}
ALPHA: Schema = {
    "type": "number",
    "exclusiveMinimum": 0,
    "maximum": model.MAX_ALPHA,
    "default": stats.DEFAULT_ALPHA,
    "description": "Every interval is at level 1 - alpha.",
}
SEQUENTIAL_TUNING: Schema = {
    "type": "integer",
    "minimum": model.MIN_SEQUENTIAL_TUNING,
    "maximum": model.MAX_SEQUENTIAL_TUNING,
    "default": stats.DEFAULT_SEQUENTIAL_TUNING,
    "description": "N*: the two arms' total exposures where the team expects to decide; the "
    "always-valid intervals are narrowest there.",
}
CORRECTION: Schema = {
    "enum": [None, *stats.CORRECTIONS],
    "default": None,
    "description": "Applied across the non-control variants of the goal read.",
}
# proxy.domain.model.user_id: a string or an integer of 1 to MAX_USER_ID characters.
USER_ID: Schema = {
    "anyOf": [
        {"type": "string", "minLength": 1, "maxLength": MAX_USER_ID},
        {"type": "integer"},
    ]
}
USER_ID_OR_NONE: Schema = {
    "anyOf": [
        {"type": "string", "maxLength": MAX_USER_ID},
        {"type": "integer"},
        {"type": "null"},
    ]
}
STAMPS = {"created_at": TIME, "updated_at": TIME}

# --- Targeting conditions: the value each operator takes (rules.check_condition) -------------

_CORE = r"(0|[1-9][0-9]*)"
_PRE = r"(0|[1-9][0-9]*|[0-9]*[A-Za-z-][0-9A-Za-z-]*)"  # no leading zero in a number
SEMVER = rf"^{_CORE}\.{_CORE}\.{_CORE}(-{_PRE}(\.{_PRE})*)?(\+[0-9A-Za-z-]+(\.[0-9A-Za-z-]+)*)?$"
OPERATOR_VALUES: tuple[tuple[tuple[str, ...], Schema | None], ...] = (
    (("equals", "not_equals", "contains", "not_contains", "starts_with", "ends_with"), SCALAR),
    (("in", "not_in"), array(SCALAR, minItems=1, maxItems=rules.MAX_LIST_ITEMS)),
    (("gt", "gte", "lt", "lte"), {"type": "number"}),
    (("semver_eq", "semver_gt", "semver_lt"), {"type": "string", "pattern": SEMVER}),
    (("before", "after"), TIME),
    (("regex",), {"type": "string", "maxLength": rules.MAX_REGEX_LENGTH, "description": "RE2"}),
    (("is_set", "is_not_set"), None),  # no value: null or absent
)


def condition(attribute: str) -> Schema:
    """A condition; a rule names the context attribute `attribute`, a segment names it `key`."""
    cases = []
    for operators, value in OPERATOR_VALUES:
        when = {"properties": {"operator": {"enum": list(operators)}}, "required": ["operator"]}
        then = (
            {"properties": {"value": {"type": "null"}}}
            if value is None
            else {"properties": {"value": value}, "required": ["value"]}
        )
        cases.append({"if": when, "then": then})
    name = {"type": "string", "minLength": 1, "maxLength": rules.MAX_ATTRIBUTE_LENGTH}
    properties = {attribute: name, "operator": {"enum": sorted(rules.OPERATORS)}, "value": ANY}
    return obj(properties, f"{attribute} operator", allOf=cases)


def conditions(name: str) -> Schema:
    return array(ref(name), maxItems=model.MAX_CONDITIONS)


def rule_fields(**overrides: Schema) -> Schema:
    return {
        "position": POSITION,
        "conditions": conditions("Condition"),
        "value": FLAG_VALUE,
        "percentage": nullable(percentage(whole=False)),
        "enabled": BOOLEAN,
        "segment_id": {**STRING_OR_NULL, "description": "A segment of the flag's project."},
        **overrides,
    }


# --- Components -------------------------------------------------------------------------------

# The guide's own requests (seed/experiments-guide.txt), and one of each other kind.
GUIDE_PROJECT = "3f2c1b4a-5d6e-4f8a-9b0c-1d2e3f4a5b6c"
GUIDE_FLAG = "f1a2b3c4-5d6e-7f8a-9b0c-1d2e3f4a5b6c"
GUIDE_EXPERIMENT = "e1a2b3c4-5d6e-7f8a-9b0c-1d2e3f4a5b6c"
GUIDE_VARIANTS = [
    {"key": "control", "value": "old_checkout", "percentage": 50},
    {"key": "treatment", "value": "new_checkout", "percentage": 50},
]
EXAMPLES: dict[str, Any] = {
    "KeyCreate": {"name": "web app", "scopes": ["flags:evaluate"], "project_ids": [GUIDE_PROJECT]},
    "ProjectCreate": {"name": "Shop", "environments": ["production", "staging"]},
    "FlagCreate": {
        "project_id": GUIDE_PROJECT,
        "key": "checkout_flow",
        "name": "Checkout Flow",
        "flag_type": "string",
        "default_value": "control",
        "description": "Checkout flow A/B test",
    },
    "RuleCreate": {
        "environment": "production",
        "conditions": [{"attribute": "country", "operator": "in", "value": ["DE", "FR"]}],
        "value": "new_checkout",
        "percentage": 25,
    },
    "SegmentCreate": {
        "project_id": GUIDE_PROJECT,
        "name": "Beta testers",
        "rules": [{"key": "email", "operator": "ends_with", "value": "@example.com"}],
        "match_type": "all",
    },
    "ExperimentCreate": {
        "name": "Checkout Flow Test",
        "environment": "production",
        "variants": GUIDE_VARIANTS,
    },
    "EvaluateRequest": {
        "project_id": GUIDE_PROJECT,
        "environment": "production",
        "context": {"user_id": "usr_123"},
    },
    "TrackRequest": {
        "flag_id": GUIDE_FLAG,
        "experiment_id": GUIDE_EXPERIMENT,
        "user_id": "usr_123",
    },
    "OfrepRequest": {"context": {"targetingKey": "usr_123", "project_id": GUIDE_PROJECT}},
    "WebhookCreate": {
        "project_id": GUIDE_PROJECT,
        "url": "https://hooks.example.com/flags",
        "events": ["flag.toggled", "flag.updated"],
    },
}

VARIANT = record({"key": NAME, "value": FLAG_VALUE, "percentage": percentage(whole=True)})
STREAM_ID = matching(model.STREAM_ID_RE, description="An audit entry id (a Redis stream id).")
# What proxy.domain.model.webhook_url accepts is narrower (ASCII, a valid port, no credentials);
# whatever this pattern refuses, it refuses too.
WEBHOOK_URL: Schema = {
    "type": "string",
    "maxLength": model.MAX_URL,
    "pattern": r"^https?://[^\s@#/?]+([/?][^\s#]*)?$",
    "description": "http or https. Its host must not resolve to a private, loopback, "
    "link-local, multicast, reserved or unspecified address (unless "
    "EDGE_WEBHOOK_ALLOW_PRIVATE=1).",
}
EVENTS = array(
    {"enum": [*model.AUDIT_ACTIONS, model.ALL_EVENTS]},
    minItems=1,
    maxItems=model.MAX_EVENTS,
    description='The audit actions to deliver; `["*"]` for all of them.',
)
RECORD_OR_NULL: Schema = {
    "type": ["object", "null"],
    "description": "The record as stored (never a key's token hash); null for none.",
}
FLAG_RESULT = record({"value": ANY, "rule_id": STRING_OR_NULL})
OFREP_ERROR_CODES = ["PARSE_ERROR", "TARGETING_KEY_MISSING", "INVALID_CONTEXT", "GENERAL"]
OFREP_CONTEXT = obj(
    {
        "targetingKey": {**USER_ID_OR_NONE, "description": "The user id, as evaluate's user_id."},
        "project_id": {**STRING, "description": "Unless the key has exactly one project."},
        "environment": {**STRING, "description": "Default: the project's default."},
    },
    description="Any attributes, as in evaluate's `context`.",
)

SCHEMAS: dict[str, Schema] = {
    "Error": obj(
        {
            "error": {**STRING, "description": "A human sentence."},
            "details": {
                "type": "object",
                "additionalProperties": STRING,
                "description": "422: field path -> what is wrong.",
            },
            "reason": {**STRING, "description": "503: why."},
            "retry_after": {"type": "integer", "description": "429: seconds to wait."},
        },
        "error",
    ),
    "ValidationError": {"allOf": [ref("Error"), {"required": ["details"]}]},
    # Keys
    "KeyCreate": obj(
        {
            "name": text(),
            "scopes": array({"enum": list(access.SCOPES)}, minItems=1),
            "project_ids": nullable(array(STRING, minItems=1, description="Existing projects.")),
        },
        "name scopes",
    ),
    "Key": record(
        {
            "id": ID,
            "name": STRING,
            "scopes": array({"enum": list(access.SCOPES)}),
            "project_ids": nullable(array(STRING)),
            "prefix": {**STRING, "maxLength": 12, "description": "The token's first characters."},
            "created_at": TIME,
        }
    ),
    "NewKey": {
        "allOf": [ref("Key"), obj({"token": {**STRING, "description": "Shown once."}}, "token")]
    },
    # Projects
    "ProjectCreate": obj(
        {
            "name": text(),
            "slug": nullable(matching(model.SLUG_RE)),
            "environments": nullable(array(NAME, minItems=1, maxItems=20, uniqueItems=True)),
            "settings": nullable(
                obj(
                    {"default_environment": STRING},
                    description="`default_environment`: one of `environments` (the first).",
                )
            ),
        },
        "name",
    ),
    "Project": record(
        {
            "id": ID,
            "name": STRING,
            "slug": STRING,
            "environments": array(STRING),
            "settings": obj({"default_environment": STRING}, "default_environment"),
            **STAMPS,
        }
    ),
    # Flags
    "FlagCreate": obj(
        {
            "project_id": {**STRING, "minLength": 1},
            "key": matching(model.FLAG_KEY_RE, description="Unique in the project."),
            "name": text(),
            "flag_type": {"enum": list(model.FLAG_TYPES)},
            "default_value": {"description": "A value of `flag_type`."},
            "description": DESCRIPTION,
            "tags": TAGS,
        },
        "project_id key name flag_type default_value",
        allOf=[
            {
                "if": {"properties": {"flag_type": {"const": type_}}, "required": ["flag_type"]},
                "then": {"properties": {"default_value": {"type": type_}}},
            }
            for type_ in ("boolean", "string", "number")
        ],
    ),
    "FlagPatch": obj(
        {
            "name": nullable(text()),
            "description": DESCRIPTION,
            "default_value": FLAG_VALUE,
            "enabled": BOOLEAN,
            "tags": TAGS,
        }
    ),
    "Flag": record(
        {
            "id": ID,
            "project_id": STRING,
            "key": STRING,
            "name": STRING,
            "flag_type": {"enum": list(model.FLAG_TYPES)},
            "default_value": FLAG_VALUE,
            "enabled": BOOLEAN,
            "description": STRING_OR_NULL,
            "tags": array(STRING),
            **STAMPS,
        }
    ),
    # Targeting rules
    "Condition": condition("attribute"),
    "RuleCreate": obj({"environment": ENVIRONMENT, **rule_fields()}, "environment value"),
    "RulePatch": obj(
        rule_fields(environment={**STRING, "description": "Only the rule's own: cannot change."})
    ),
    "Rule": record(
        {
            "id": ID,
            "flag_id": ID,
            "environment": STRING,
            "position": COUNT,
            "conditions": array(ref("Condition")),
            "value": FLAG_VALUE,
            "percentage": {**NUMBER_OR_NULL, "minimum": 0, "maximum": 100},
            "enabled": BOOLEAN,
            "segment_id": STRING_OR_NULL,
            **STAMPS,
        }
    ),
    # Segments
    "SegmentCondition": condition("key"),
    "SegmentCreate": obj(
        {
            "project_id": {**STRING, "minLength": 1},
            "name": text(),
            "description": DESCRIPTION,
            "rules": conditions("SegmentCondition"),
            "match_type": {**MATCH_TYPE, "default": "all"},
        },
        "project_id name",
    ),
    "SegmentPatch": obj(
        {
            "name": nullable(text()),
            "description": DESCRIPTION,
            "rules": conditions("SegmentCondition"),
            "match_type": MATCH_TYPE,
        }
    ),
    "Segment": record(
        {
            "id": ID,
            "project_id": STRING,
            "name": STRING,
            "description": STRING_OR_NULL,
            "rules": array(ref("SegmentCondition")),
            "match_type": MATCH_TYPE,
            **STAMPS,
        }
    ),
    # Experiments
    "Variant": VARIANT,
    "ExperimentCreate": obj(
        {
            "name": text(),
            "environment": ENVIRONMENT,
            "variants": array(
                ref("Variant"),
                minItems=2,
                maxItems=model.MAX_VARIANTS,
                description="Unique keys; percentages summing to exactly 100; values of the "
                "flag's `flag_type`.",
            ),
            "traffic_percentage": {**percentage(whole=False), "default": 100},
            "analysis": ref("AnalysisInput"),
        },
        "name environment variants",
    ),
    "ExperimentPatch": obj(
        {
            "name": nullable(text()),
            "traffic_percentage": {
                **percentage(whole=False),
                "description": "While running it may only rise; once stopped it is fixed.",
            },
            "analysis": {
                **ref("AnalysisInput"),
                "description": "At any status; merges the fields it names into the settings.",
            },
        }
    ),
    "AnalysisInput": obj(
        {
            "alpha": ALPHA,
            "sequential_tuning": SEQUENTIAL_TUNING,
            "correction": CORRECTION,
        },
        additionalProperties=False,
        description="How results are read; a field left out keeps its current (or default) value.",
    ),
    "Analysis": record(
        {
            "alpha": ALPHA,
            "sequential_tuning": SEQUENTIAL_TUNING,
            "correction": CORRECTION,
        }
    ),
    "Experiment": record(
        {
            "id": ID,
            "flag_id": ID,
            "project_id": STRING,
            "name": STRING,
            "environment": STRING,
            "status": {"enum": ["draft", "running", "stopped"]},
            "variants": array(ref("Variant"), minItems=2),
            "traffic_percentage": {"type": "number", "minimum": 0, "maximum": 100},
            "analysis": ref("Analysis"),
            "conversions": {**COUNT, "description": "Distinct users converting, default goal."},
            "started_at": TIME_OR_NULL,
            "stopped_at": TIME_OR_NULL,
            **STAMPS,
        }
    ),
    "ExperimentWithResults": {
        "allOf": [ref("Experiment"), obj({"results": ref("Results")}, "results")]
    },
    "Results": record(
        {
            "control": {**STRING, "description": "The first variant's key."},
            "goal": STRING,
            "variants": array(ref("VariantResult")),
            "srm": record({"p_value": PROBABILITY, "warning": BOOLEAN}),
        },
        description="Null wherever a figure is undefined; the control's comparisons are null.",
    ),
    "VariantResult": record(
        {
            "key": STRING,
            "exposures": COUNT,
            "conversions": COUNT,
            "conversion_rate": PROBABILITY,
            "absolute_lift": NUMBER_OR_NULL,
            "absolute_lift_ci": INTERVAL,
            "relative_lift": NUMBER_OR_NULL,
            "relative_lift_ci": INTERVAL,
            "p_value": PROBABILITY,
            "p_value_adjusted": ADJUSTED,
            "chance_to_beat_control": PROBABILITY,
            "sequential": nullable(ref("Sequential")),
            "value": nullable(ref("ValueResult")),
        }
    ),
    "Sequential": record(
        {
            "absolute_lift_ci": INTERVAL,
            "relative_lift_ci": INTERVAL,
            "p_value": PROBABILITY,
            "p_value_adjusted": ADJUSTED,
        },
        description="Always-valid figures: they hold however often the results are read.",
    ),
    "ValueResult": record(
        {
            "sum": NUMBER_OR_NULL,
            "mean": NUMBER_OR_NULL,
            "variance": {"type": ["number", "null"], "minimum": 0},
            "absolute_lift": NUMBER_OR_NULL,
            "absolute_lift_ci": INTERVAL,
            "relative_lift": NUMBER_OR_NULL,
            "relative_lift_ci": INTERVAL,
            "p_value": PROBABILITY,
            "p_value_adjusted": ADJUSTED,
            "sequential": nullable(ref("Sequential")),
        },
        description="Over the variant's exposed users, a user without a counted conversion "
        "being 0; present once a counted conversion of the goal carried a value.",
    ),
    "ExperimentSeries": record(
        {
            "goal": STRING,
            "days": array(
                record(
                    {
                        "date": {"type": "string", "format": "date"},
                        "variants": array(ref("SeriesVariant")),
                    }
                ),
                description="Each UTC day that had events, oldest first: the cumulative figures "
                "at its end (the last day's are now's, equal to the results).",
            ),
        }
    ),
    "SeriesVariant": record(
        {
            "key": STRING,
            "exposures": COUNT,
            "conversions": COUNT,
            "conversion_rate": PROBABILITY,
            "absolute_lift": NUMBER_OR_NULL,
            "sequential_absolute_lift_ci": INTERVAL,
        }
    ),
    # Evaluate and track
    "EvaluateRequest": obj(
        {
            "project_id": STRING,
            "environment": {**STRING_OR_NULL, "description": "Default: the project's default."},
            "context": nullable(
                obj(
                    {"user_id": USER_ID_OR_NONE},
                    description="Attributes for the rules; `user_id` buckets rollouts and "
                    'experiments (an integer as its decimal spelling; absent, null or "" '
                    "is no user).",
                )
            ),
            "flags": nullable(
                array(
                    STRING,
                    maxItems=model.MAX_FLAG_KEYS,
                    description="Only these flag keys are answered, and only they expose the "
                    "user to their experiments; unknown keys are absent from the answer.",
                )
            ),
        },
        "project_id",
    ),
    "EvaluateResponse": obj(
        {
            "flags": {
                "type": "object",
                "additionalProperties": FLAG_RESULT,
                "description": "Every flag of the project, by key.",
            }
        },
        "flags",
    ),
    "TrackRequest": obj(
        {
            "flag_id": STRING,
            "experiment_id": STRING,
            "user_id": USER_ID,
            "goal": GOAL,
            "value": {
                "type": "number",
                "minimum": -model.MAX_VALUE,
                "maximum": model.MAX_VALUE,
                "description": "The conversion's value (revenue, say): the first counted "
                "conversion of a user and goal keeps its value; absent counts 0.",
            },
        },
        "flag_id experiment_id user_id",
    ),
    "TrackResponse": envelope(record({"ok": {"const": True}})),
    # OFREP (open-feature/protocol, service/openapi.yaml)
    "OfrepRequest": obj({"context": OFREP_CONTEXT}),
    "OfrepSuccess": obj(
        {
            "key": STRING,
            "value": ANY,
            "reason": {"enum": ["SPLIT", "TARGETING_MATCH", "DISABLED", "DEFAULT"]},
            "variant": {**STRING, "description": "The variant key, the rule id, or `default`."},
            "metadata": obj({"environment": STRING}),
        },
        "key value reason variant",
    ),
    "OfrepFailure": obj(
        {"key": STRING, "errorCode": {"enum": OFREP_ERROR_CODES}, "errorDetails": STRING},
        "key errorCode",
    ),
    "OfrepFlagNotFound": obj(
        {"key": STRING, "errorCode": {"const": "FLAG_NOT_FOUND"}, "errorDetails": STRING},
        "key errorCode",
    ),
    "OfrepBulkSuccess": obj(
        {
            "flags": array(ref("OfrepSuccess")),
            "eventStreams": array(
                ref("OfrepEventStream"),
                description="Where to hear of changes (ADR-0008); absent while streams are off.",
            ),
        },
        "flags",
    ),
    "OfrepEventStream": obj(
        {
            "type": {"const": "sse"},
            "endpoint": obj(
                {
                    "requestUri": {
                        "type": "string",
                        "pattern": "^/ofrep/v1/sse[?]channel=",
                        "description": "Relative: the provider puts its own base URL's origin "
                        "before it, so any load balancer or CDN in front works.",
                    }
                },
                "requestUri",
            ),
            "inactivityDelaySec": {"type": "integer", "minimum": 1},
        },
        "type endpoint inactivityDelaySec",
    ),
    "OfrepBulkFailure": obj(
        {"errorCode": {"enum": OFREP_ERROR_CODES}, "errorDetails": STRING}, "errorCode"
    ),
    # Audit log
    "Actor": record(
        {
            "key_id": {**STRING_OR_NULL, "description": "Null: the CLI, the bootstrap, a proxy."},
            "key_name": STRING,
        }
    ),
    "AuditEntry": record(
        {
            "id": STREAM_ID,
            "at": TIME,
            "action": {"enum": list(model.AUDIT_ACTIONS)},
            "resource_type": {"enum": sorted(model.RESOURCE_TYPES.values())},
            "resource_id": STRING,
            "project_id": STRING_OR_NULL,
            "version": {**COUNT, "description": "The scope's version this write made."},
            "actor": ref("Actor"),
            "before": RECORD_OR_NULL,
            "after": RECORD_OR_NULL,
        }
    ),
    "AuditPage": record(
        {
            "data": array(ref("AuditEntry"), description="Newest first."),
            "meta": record(
                {
                    "next_cursor": nullable(
                        {**STREAM_ID, "description": "The `cursor` of the next page."}
                    )
                }
            ),
        }
    ),
    # Webhooks
    "WebhookCreate": obj(
        {
            "project_id": {**STRING, "minLength": 1},
            "url": WEBHOOK_URL,
            "events": EVENTS,
            "enabled": {**BOOLEAN, "default": True},
            "description": DESCRIPTION,
        },
        "project_id url events",
    ),
    "WebhookPatch": obj(
        {
            "url": WEBHOOK_URL,
            "events": EVENTS,
            "enabled": {**BOOLEAN, "description": "true again also clears `failure_count`."},
            "description": DESCRIPTION,
        }
    ),
    "Webhook": record(
        {
            "id": ID,
            "project_id": STRING,
            "url": STRING,
            "events": array(STRING),
            "enabled": BOOLEAN,
            "description": STRING_OR_NULL,
            "disabled_reason": {
                **STRING_OR_NULL,
                "description": "Set when failures disabled it; cleared when enabled again.",
            },
            "since_version": {
                **COUNT,
                "description": "The project version that created it or last enabled it: it "
                "receives the entries of later versions.",
            },
            "failure_count": {**COUNT, "description": "Failed attempts in a row."},
            **STAMPS,
        }
    ),
    "NewWebhook": {
        "allOf": [
            ref("Webhook"),
            obj(
                {
                    "secret": {
                        **STRING,
                        "pattern": "^whsec_",
                        "description": "The signing secret (Standard Webhooks), shown once.",
                    }
                },
                "secret",
            ),
        ]
    },
    "Delivery": record(
        {
            "entry_id": STREAM_ID,
            "message_id": {**STRING, "description": "The `webhook-id` header sent."},
            "type": STRING,
            "attempt": {"type": "integer", "minimum": 1},
            "status": {"type": ["integer", "null"], "description": "Null: no answer."},
            "ok": BOOLEAN,
            "duration_ms": {"type": "number", "minimum": 0},
            "error": STRING_OR_NULL,
            "at": TIME,
        }
    ),
}
SCHEMAS.update({name: {**SCHEMAS[name], "examples": [body]} for name, body in EXAMPLES.items()})


def json_content(schema: Schema) -> Schema:
    return {"application/json": {"schema": schema}}


def answer(description: str, schema: Schema | None = None, **extra: Any) -> Schema:
    out: Schema = {"description": description, **extra}
    if schema is not None:
        out["content"] = json_content(schema)
    return out


ERRORS: dict[int, Schema] = {
    400: answer("The body is not JSON, or not a JSON object.", ref("Error")),
    401: answer("Missing, malformed, unknown or revoked key.", ref("Error")),
    403: answer("The key lacks the scope, or the project is outside its list.", ref("Error")),
    404: answer("Unknown id (a malformed id is unknown too).", ref("Error")),
    409: answer("Lifecycle conflict, duplicate, or concurrent change.", ref("Error")),
    413: answer("The body is over the limit (default 64 KiB).", ref("Error")),
    422: answer("Well-formed JSON that breaks a rule.", ref("ValidationError")),
    429: answer(
        "Rate limit exceeded (when configured).",
        ref("Error"),
        headers={"Retry-After": {"schema": {"type": "integer"}, "description": "Seconds."}},
    ),
    503: answer("No configuration snapshot yet, or the store is unreachable.", ref("Error")),
}


def error_responses(*codes: int) -> Schema:
    return {str(code): {"$ref": f"#/components/responses/E{code}"} for code in codes}


def parameter(name: str, where: str, schema: Schema, *, required: bool = False) -> Schema:
    return {"name": name, "in": where, "required": required or where == "path", "schema": schema}


def path_ids(*names: str) -> list[Schema]:
    return [{"$ref": f"#/components/parameters/{name}"} for name in names]


PATH_IDS = (
    "key_id",
    "project_id",
    "flag_id",
    "rule_id",
    "segment_id",
    "experiment_id",
    "webhook_id",
)
PROJECT_QUERY = parameter("project_id", "query", {**STRING, "minLength": 1}, required=True)

# --- Operations -------------------------------------------------------------------------------

AUTH = (401, 403, 429, 503)  # every /api/v1 and /ofrep route
BODY = (400, 413, 422)  # every route that reads a JSON body
CHANGE = (*BODY, *AUTH, 404, 409)  # a change to a stored resource
OFREP_SECURITY: list[Schema] = [{"bearerAuth": []}, {"apiKeyAuth": []}]
NO_AUTH: list[Schema] = []


def op(
    op_id: str,
    summary: str,
    responses: Schema,
    *,
    params: list[Schema] | None = None,
    body: str | None = None,
    body_required: bool = True,
    security: list[Schema] | None = None,
) -> Schema:
    """An operation; `body` names the schema of its JSON request body."""
    out: Schema = {"operationId": op_id, "summary": summary}
    if params:
        out["parameters"] = params
    if body is not None:
        out["requestBody"] = {"required": body_required, "content": json_content(ref(body))}
    if security is not None:
        out["security"] = security
    out["responses"] = dict(sorted(responses.items()))
    return out


def created(name: str, *errors: int) -> Schema:
    return {"201": answer("Created.", envelope(ref(name))), **error_responses(*errors)}


def one(name: str, *errors: int) -> Schema:
    return {"200": answer("The resource.", envelope(ref(name))), **error_responses(*errors)}


def many(name: str, *errors: int) -> Schema:
    return {"200": answer("The list.", envelope(array(ref(name)))), **error_responses(*errors)}


def deleted(*errors: int) -> Schema:
    return {"204": answer("Deleted."), **error_responses(*errors)}


def tagged(tag: str, paths: dict[str, Schema]) -> dict[str, Schema]:
    for operations in paths.values():
        for operation in operations.values():
            operation["tags"] = [tag]
    return paths


FLAG = path_ids("flag_id")
EXPERIMENT = path_ids("flag_id", "experiment_id")
WEBHOOK = path_ids("webhook_id")
AUDIT_QUERY = [
    parameter("project_id", "query", {**STRING, "description": "Absent: projects and keys."}),
    parameter("resource_id", "query", {**ID, "description": "One record's entries only."}),
    parameter(
        "limit",
        "query",
        {"type": "integer", "minimum": 1, "maximum": model.AUDIT_LIMIT_MAX,
         "default": model.AUDIT_LIMIT_DEFAULT},
    ),
    parameter("cursor", "query", {**STREAM_ID, "description": "A page's `meta.next_cursor`."}),
]  # fmt: skip

PATHS: dict[str, Schema] = {
    **tagged("keys", {
        "/api/v1/keys": {
            "post": op("createKey", "Create a key (the token is shown in this answer only)",
                       created("NewKey", *BODY, *AUTH, 409), body="KeyCreate"),
            "get": op("listKeys", "List keys, without tokens", many("Key", *AUTH)),
        },
        "/api/v1/keys/{key_id}": {
            "delete": op("revokeKey", "Revoke a key", deleted(*AUTH, 404, 409),
                         params=path_ids("key_id")),
        },
    }),
    **tagged("projects", {
        "/api/v1/flags/projects": {
            "post": op("createProject", "Create a project",
                       created("Project", *BODY, *AUTH, 409), body="ProjectCreate"),
            "get": op("listProjects", "List the projects the key may see", many("Project", *AUTH)),
        },
        "/api/v1/flags/projects/{project_id}": {
            "get": op("getProject", "Read a project", one("Project", *AUTH, 404),
                      params=path_ids("project_id")),
        },
    }),
    **tagged("segments", {
        "/api/v1/flags/segments": {
            "post": op("createSegment", "Create a segment",
                       created("Segment", *BODY, *AUTH, 404, 409), body="SegmentCreate"),
            "get": op("listSegments", "List a project's segments",
                      many("Segment", *AUTH, 404, 422), params=[PROJECT_QUERY]),
        },
        "/api/v1/flags/segments/{segment_id}": {
            "get": op("getSegment", "Read a segment", one("Segment", *AUTH, 404),
                      params=path_ids("segment_id")),
            "patch": op("updateSegment", "Change a segment", one("Segment", *CHANGE),
                        params=path_ids("segment_id"), body="SegmentPatch"),
            "delete": op("deleteSegment", "Delete a segment (409 while a rule uses it)",
                         deleted(*AUTH, 404, 409), params=path_ids("segment_id")),
        },
    }),
    **tagged("evaluation", {
        "/api/v1/flags/evaluate": {
            "post": op("evaluate", "Every flag of a project for one context (no envelope)",
                       {"200": answer("Values by flag key.", ref("EvaluateResponse")),
                        **error_responses(*BODY, *AUTH, 404)},
                       body="EvaluateRequest"),
        },
        "/api/v1/flags/track": {
            "post": op("track", "Record a conversion for the user's variant, once per goal",
                       {"200": answer("Recorded, or recorded before.", ref("TrackResponse")),
                        **error_responses(*BODY, *AUTH, 404, 409)},
                       body="TrackRequest"),
        },
    }),
    **tagged("flags", {
        "/api/v1/flags": {
            "post": op("createFlag", "Create a flag (disabled)",
                       created("Flag", *BODY, *AUTH, 404, 409), body="FlagCreate"),
            "get": op("listFlags", "List a project's flags", many("Flag", *AUTH, 404, 422),
                      params=[PROJECT_QUERY]),
        },
        "/api/v1/flags/{flag_id}": {
            "get": op("getFlag", "Read a flag", one("Flag", *AUTH, 404), params=FLAG),
            "patch": op("updateFlag", "Change a flag", one("Flag", *CHANGE), params=FLAG,
                        body="FlagPatch"),
            "delete": op("deleteFlag", "Delete a flag with its rules and experiments",
                         deleted(*AUTH, 404, 409), params=FLAG),
        },
    }),
    **tagged("rules", {
        "/api/v1/flags/{flag_id}/rules": {
            "post": op("createRule", "Add a targeting rule", created("Rule", *CHANGE),
                       params=FLAG, body="RuleCreate"),
            "get": op("listRules", "A flag's rules, in evaluation order",
                      many("Rule", *AUTH, 404, 422),
                      params=[*FLAG, parameter("environment", "query", STRING)]),
        },
        "/api/v1/flags/{flag_id}/rules/{rule_id}": {
            "patch": op("updateRule", "Change a rule", one("Rule", *CHANGE),
                        params=path_ids("flag_id", "rule_id"), body="RulePatch"),
            "delete": op("deleteRule", "Delete a rule", deleted(*AUTH, 404, 409),
                         params=path_ids("flag_id", "rule_id")),
        },
    }),
    **tagged("experiments", {
        "/api/v1/flags/{flag_id}/experiments": {
            "post": op("createExperiment", "Attach an experiment (draft)",
                       created("Experiment", *CHANGE), params=FLAG, body="ExperimentCreate"),
            "get": op("listExperiments", "A flag's experiments", many("Experiment", *AUTH, 404),
                      params=FLAG),
        },
        "/api/v1/flags/{flag_id}/experiments/{experiment_id}": {
            "get": op("getExperiment", "An experiment with its results for a goal",
                      one("ExperimentWithResults", *AUTH, 404, 422),
                      params=[*EXPERIMENT, parameter("goal", "query", GOAL)]),
            "patch": op("updateExperiment", "Change an experiment's name, traffic or analysis",
                        one("Experiment", *CHANGE), params=EXPERIMENT, body="ExperimentPatch"),
        },
        "/api/v1/flags/{flag_id}/experiments/{experiment_id}/series": {
            "get": op("getExperimentSeries", "A goal's cumulative figures per UTC day",
                      one("ExperimentSeries", *AUTH, 404, 422),
                      params=[*EXPERIMENT, parameter("goal", "query", GOAL)]),
        },
        "/api/v1/flags/{flag_id}/experiments/{experiment_id}/start": {
            "post": op("startExperiment", "Start a draft experiment (no body)",
                       one("Experiment", *AUTH, 404, 409), params=EXPERIMENT),
        },
        "/api/v1/flags/{flag_id}/experiments/{experiment_id}/stop": {
            "post": op("stopExperiment", "Stop a running experiment (no body)",
                       one("Experiment", *AUTH, 404, 409), params=EXPERIMENT),
        },
    }),
    **tagged("audit", {
        "/api/v1/flags/audit": {
            "get": op("listAuditEntries",
                      "Configuration writes, newest first (a filtered page reads at most 1000 "
                      "entries, and may hold fewer than `limit` with a cursor to go on)",
                      {"200": answer("A page.", ref("AuditPage")),
                       **error_responses(*AUTH, 404, 422)},
                      params=AUDIT_QUERY),
        },
    }),
    **tagged("webhooks", {
        "/api/v1/flags/webhooks": {
            "post": op("createWebhook", "Create a webhook (its secret is in this answer only)",
                       created("NewWebhook", *BODY, *AUTH, 404, 409), body="WebhookCreate"),
            "get": op("listWebhooks", "A project's webhooks, without secrets",
                      many("Webhook", *AUTH, 404, 422), params=[PROJECT_QUERY]),
        },
        "/api/v1/flags/webhooks/{webhook_id}": {
            "get": op("getWebhook", "Read a webhook", one("Webhook", *AUTH, 404), params=WEBHOOK),
            "patch": op("updateWebhook", "Change a webhook", one("Webhook", *CHANGE),
                        params=WEBHOOK, body="WebhookPatch"),
            "delete": op("deleteWebhook", "Delete a webhook", deleted(*AUTH, 404, 409),
                         params=WEBHOOK),
        },
        "/api/v1/flags/webhooks/{webhook_id}/deliveries": {
            "get": op("listWebhookDeliveries", "The latest delivery attempts, newest first",
                      many("Delivery", *AUTH, 404), params=WEBHOOK),
        },
    }),
    **tagged("ofrep", {
        "/ofrep/v1/evaluate/flags/{key}": {
            "post": op("ofrepEvaluateFlag", "OFREP: evaluate one flag",
                       {"200": answer("The flag's value.", ref("OfrepSuccess")),
                        "400": answer("Bad request or context.", ref("OfrepFailure")),
                        "404": answer("No such flag in the project.", ref("OfrepFlagNotFound")),
                        **error_responses(413, *AUTH)},
                       params=[parameter("key", "path", STRING)], body="OfrepRequest",
                       body_required=False, security=OFREP_SECURITY),
        },
        "/ofrep/v1/evaluate/flags": {
            "post": op("ofrepEvaluateFlags", "OFREP: evaluate every flag of the project",
                       {"200": answer("Every flag's value.", ref("OfrepBulkSuccess"),
                                      headers={"ETag": {"schema": STRING}}),
                        "304": answer("Not modified: If-None-Match names this answer's ETag."),
                        "400": answer("Bad request or context.", ref("OfrepBulkFailure")),
                        **error_responses(413, *AUTH)},
                       params=[parameter("If-None-Match", "header", STRING),
                               {**parameter("flagConfigEtag", "query", STRING),
                                "description": "The etag of the event that triggered this "
                                "re-fetch: a version newer than this proxy holds waits (up to "
                                "1 s) until it holds it."},
                               {**parameter("flagConfigLastModified", "query", STRING),
                                "description": "Accepted and ignored: the etag says it all."}],
                       body="OfrepRequest", body_required=False, security=OFREP_SECURITY),
        },
        "/ofrep/v1/sse": {
            "get": op("ofrepEventStream",
                      "OFREP: the event stream of a channel (no key: the channel is the grant)",
                      {"200": {"description": "`text/event-stream`, open until either side "
                               "closes it: for each configuration change of the channel's "
                               "project, `id: <version>`, `event: message`, `data: "
                               "{\"type\": \"refetchEvaluation\", \"etag\": "
                               "\"\\\"<version>\\\"\", \"lastModified\": <unix s>}`; a "
                               "comment line every 15 s.",
                               "content": {"text/event-stream": {"schema": STRING}}},
                       "401": answer("Forged or expired channel, or its key was revoked.",
                                     ref("Error")),
                       "405": answer("Not a GET.", ref("Error")),
                       "503": answer("No snapshot or no stream secret yet, streams off, or too "
                                     "many streams on this process.", ref("Error"))},
                      params=[parameter("channel", "query", STRING, required=True),
                              {**parameter("Last-Event-ID", "header", STRING),
                               "description": "Older than the current version: one event at "
                               "once."}],
                      security=NO_AUTH),
        },
    }),
    **tagged("operations", {
        "/healthz": {
            "get": op("healthz", "Alive (always 200)",
                      {"200": answer("Alive.", record({"status": {"const": "ok"}}))},
                      security=NO_AUTH),
        },
        "/readyz": {
            "get": op("readyz", "Ready: a snapshot is loaded and confirmed fresh",
                      {"200": answer("Ready.", record({"status": {"const": "ready"}})),
                       "503": answer("Not ready.", record({"error": STRING, "reason": STRING}))},
                      security=NO_AUTH),
        },
        "/metrics": {
            "get": op("metrics", "Prometheus metrics",
                      {"200": {"description": "Prometheus text format 0.0.4.",
                               "content": {"text/plain": {"schema": STRING}}}},
                      security=NO_AUTH),
        },
        "/openapi.json": {
            "get": op("openapi", "This document",
                      {"200": answer("OpenAPI 3.1.", {"type": "object"})}, security=NO_AUTH),
        },
    }),
}  # fmt: skip

DOCUMENT: Schema = {
    "openapi": "3.1.0",
    "info": {
        "title": "Edge proxy for feature flags and A/B experiments",
        "version": "0.1.0",
        "description": "Flags, targeting rules, segments and experiments under `/api/v1`, "
        "evaluation at the edge, OpenFeature's OFREP, the audit log of every configuration "
        "write, and signed webhooks (Standard Webhooks) of its entries. Key scopes: "
        "`flags:read` (reads, evaluate, track, OFREP), `flags:write` (changes), "
        "`flags:evaluate` (evaluate, track, OFREP), `*` (all three, and `/api/v1/keys` when the "
        "key has no project list).",
    },
    "servers": [{"url": "/"}],
    "security": [{"bearerAuth": []}],
    "paths": PATHS,
    "components": {
        "securitySchemes": {
            "bearerAuth": {"type": "http", "scheme": "bearer", "description": "`kr_live_...`"},
            "apiKeyAuth": {"type": "apiKey", "in": "header", "name": "X-API-Key"},
        },
        "schemas": SCHEMAS,
        "parameters": {name: parameter(name, "path", ID) for name in PATH_IDS},
        "responses": {f"E{code}": response for code, response in ERRORS.items()},
    },
}
DOCUMENT_BYTES = orjson.dumps(DOCUMENT)


async def openapi_json(request: Request) -> Response:
    return Response(DOCUMENT_BYTES, media_type="application/json")


routes = [Route("/openapi.json", openapi_json, methods=["GET"])]
