//! Kafka's request message specifications, parsed into the layout the limits walker reads.
//!
//! Apache Kafka generates its protocol code from one JSON file per message (`specs/`, copied
//! unchanged from Apache Kafka through kafka-python 3.0.12, and for the four KIP-848/KIP-714
//! requests kafka-python lacks, through tansu-sans-io 0.6.0; Apache License 2.0). Reading
//! them, rather than hand-writing a skipper per api, lets the walker know every array of
//! every request at every version, so no api is left without a bound on what its decoded
//! form may cost. The files are embedded in the binary and parsed once.

use std::collections::HashMap;
use std::sync::OnceLock;

use serde_json::Value;

use super::counts::Category;

/// An inclusive range of versions (`min > max` is the empty range).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Versions {
    /// Lowest version.
    pub min: i16,
    /// Highest version.
    pub max: i16,
}

impl Versions {
    /// No version at all.
    pub const NONE: Versions = Versions { min: 1, max: 0 };

    /// Parses Kafka's version notation: `"3"`, `"3+"`, `"3-7"` or `"none"`.
    pub fn parse(text: &str) -> Result<Versions, String> {
        let text = text.trim();
        let number = |s: &str| {
            s.trim()
                .parse::<i16>()
                .map_err(|_| format!("bad version range {text:?}"))
        };
        if text == "none" {
            Ok(Versions::NONE)
        } else if let Some(min) = text.strip_suffix('+') {
            Ok(Versions {
                min: number(min)?,
                max: i16::MAX,
            })
        } else if let Some((min, max)) = text.split_once('-') {
            Ok(Versions {
                min: number(min)?,
                max: number(max)?,
            })
        } else {
            let v = number(text)?;
            Ok(Versions { min: v, max: v })
        }
    }

    /// Whether `version` is in the range.
    pub fn contains(self, version: i16) -> bool {
        self.min <= version && version <= self.max
    }
}

/// What a field holds on the wire.
#[derive(Debug, Clone)]
pub enum Kind {
    /// A fixed number of bytes (bool, integers, float64, uuid).
    Fixed(usize),
    /// A string (classic: i16 length; flexible: unsigned varint length + 1).
    String,
    /// Bytes or records (classic: i32 length; flexible: unsigned varint length + 1).
    Bytes,
    /// An array whose elements are counted in `counts`.
    Array {
        /// The element layout.
        element: Box<Kind>,
        /// The limit its elements count against.
        counts: Category,
    },
    /// A structure (array element, or a field of its own).
    Struct(Vec<FieldSpec>),
}

/// One field of a message or structure.
#[derive(Debug, Clone)]
pub struct FieldSpec {
    /// Field name (for category decisions and errors).
    pub name: String,
    /// Versions the field exists in.
    pub versions: Versions,
    /// Versions in which it may be null.
    pub nullable: Versions,
    /// Versions in which it travels as a tagged field rather than in order.
    pub tagged: Versions,
    /// Its tag, when it has one.
    pub tag: Option<u32>,
    /// Kafka's entity type (`topicName`, `groupId`, ...), when the spec names one.
    pub entity: Option<String>,
    /// Its wire layout.
    pub kind: Kind,
}

/// One request message.
#[derive(Debug, Clone)]
pub struct MessageSpec {
    /// The message name (`MetadataRequest`).
    pub name: String,
    /// Its api key.
    pub api_key: i16,
    /// Versions the spec describes.
    pub valid: Versions,
    /// Versions that use the flexible (compact, tagged) encoding.
    pub flexible: Versions,
    /// Top-level fields.
    pub fields: Vec<FieldSpec>,
}

/// The embedded specification files.
const FILES: &[&str] = &[
    include_str!("specs/AddOffsetsToTxnRequest.json"),
    include_str!("specs/AddPartitionsToTxnRequest.json"),
    include_str!("specs/AlterClientQuotasRequest.json"),
    include_str!("specs/AlterConfigsRequest.json"),
    include_str!("specs/AlterPartitionReassignmentsRequest.json"),
    include_str!("specs/AlterReplicaLogDirsRequest.json"),
    include_str!("specs/AlterUserScramCredentialsRequest.json"),
    include_str!("specs/ApiVersionsRequest.json"),
    include_str!("specs/ConsumerGroupDescribeRequest.json"),
    include_str!("specs/ConsumerGroupHeartbeatRequest.json"),
    include_str!("specs/CreateAclsRequest.json"),
    include_str!("specs/CreatePartitionsRequest.json"),
    include_str!("specs/CreateTopicsRequest.json"),
    include_str!("specs/DeleteAclsRequest.json"),
    include_str!("specs/DeleteGroupsRequest.json"),
    include_str!("specs/DeleteRecordsRequest.json"),
    include_str!("specs/DeleteTopicsRequest.json"),
    include_str!("specs/DescribeAclsRequest.json"),
    include_str!("specs/DescribeClientQuotasRequest.json"),
    include_str!("specs/DescribeClusterRequest.json"),
    include_str!("specs/DescribeConfigsRequest.json"),
    include_str!("specs/DescribeGroupsRequest.json"),
    include_str!("specs/DescribeLogDirsRequest.json"),
    include_str!("specs/DescribeProducersRequest.json"),
    include_str!("specs/DescribeQuorumRequest.json"),
    include_str!("specs/DescribeTopicPartitionsRequest.json"),
    include_str!("specs/DescribeTransactionsRequest.json"),
    include_str!("specs/DescribeUserScramCredentialsRequest.json"),
    include_str!("specs/ElectLeadersRequest.json"),
    include_str!("specs/EndTxnRequest.json"),
    include_str!("specs/FetchRequest.json"),
    include_str!("specs/FindCoordinatorRequest.json"),
    include_str!("specs/GetTelemetrySubscriptionsRequest.json"),
    include_str!("specs/HeartbeatRequest.json"),
    include_str!("specs/IncrementalAlterConfigsRequest.json"),
    include_str!("specs/InitProducerIdRequest.json"),
    include_str!("specs/JoinGroupRequest.json"),
    include_str!("specs/LeaveGroupRequest.json"),
    include_str!("specs/ListConfigResourcesRequest.json"),
    include_str!("specs/ListGroupsRequest.json"),
    include_str!("specs/ListOffsetsRequest.json"),
    include_str!("specs/ListPartitionReassignmentsRequest.json"),
    include_str!("specs/ListTransactionsRequest.json"),
    include_str!("specs/MetadataRequest.json"),
    include_str!("specs/OffsetCommitRequest.json"),
    include_str!("specs/OffsetDeleteRequest.json"),
    include_str!("specs/OffsetFetchRequest.json"),
    include_str!("specs/OffsetForLeaderEpochRequest.json"),
    include_str!("specs/ProduceRequest.json"),
    include_str!("specs/PushTelemetryRequest.json"),
    include_str!("specs/SaslAuthenticateRequest.json"),
    include_str!("specs/SaslHandshakeRequest.json"),
    include_str!("specs/SyncGroupRequest.json"),
    include_str!("specs/TxnOffsetCommitRequest.json"),
    include_str!("specs/UpdateFeaturesRequest.json"),
    include_str!("specs/WriteTxnMarkersRequest.json"),
];

/// How many specification files are embedded.
#[cfg(test)]
pub const FILE_COUNT: usize = FILES.len();

/// The parsed specifications by api key (parsed at first use). A file that does not parse
/// leaves its api out, which removes the api from service (see the stage's `versions`);
/// the unit tests parse every file.
pub fn specs() -> &'static HashMap<i16, MessageSpec> {
    static SPECS: OnceLock<HashMap<i16, MessageSpec>> = OnceLock::new();
    SPECS.get_or_init(|| {
        FILES
            .iter()
            .filter_map(|text| match parse_message(text) {
                Ok(spec) => Some((spec.api_key, spec)),
                Err(e) => {
                    tracing::error!(error = %e, "request specification does not parse");
                    None
                }
            })
            .collect()
    })
}

/// Parses one specification file.
pub fn parse_message(text: &str) -> Result<MessageSpec, String> {
    let json: Value =
        serde_json::from_str(&strip_comments(text)).map_err(|e| format!("not JSON: {e}"))?;
    let name = str_of(&json, "name")?.to_string();
    let api_key = json
        .get("apiKey")
        .and_then(Value::as_i64)
        .and_then(|k| i16::try_from(k).ok())
        .ok_or_else(|| format!("{name}: no apiKey"))?;
    let mut common = HashMap::new();
    for st in json
        .get("commonStructs")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        common.insert(str_of(st, "name")?.to_string(), st.clone());
    }
    let fields = parse_fields(json.get("fields"), &common).map_err(|e| format!("{name}: {e}"))?;
    Ok(MessageSpec {
        valid: Versions::parse(str_of(&json, "validVersions")?)?,
        flexible: Versions::parse(str_of(&json, "flexibleVersions")?)?,
        name,
        api_key,
        fields,
    })
}

fn str_of<'a>(json: &'a Value, key: &str) -> Result<&'a str, String> {
    json.get(key)
        .and_then(Value::as_str)
        .ok_or_else(|| format!("missing {key:?}"))
}

fn parse_fields(
    fields: Option<&Value>,
    common: &HashMap<String, Value>,
) -> Result<Vec<FieldSpec>, String> {
    fields
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .map(|f| parse_field(f, common))
        .collect()
}

fn optional_versions(json: &Value, key: &str) -> Result<Versions, String> {
    json.get(key)
        .and_then(Value::as_str)
        .map_or(Ok(Versions::NONE), Versions::parse)
}

fn parse_field(json: &Value, common: &HashMap<String, Value>) -> Result<FieldSpec, String> {
    let name = str_of(json, "name")?.to_string();
    let type_name = str_of(json, "type")?;
    let entity = json
        .get("entityType")
        .and_then(Value::as_str)
        .map(str::to_string);
    let kind = match type_name.strip_prefix("[]") {
        Some(element) => {
            let element = element_kind(element, json, common)?;
            let counts = array_category(&name, &element, entity.as_deref());
            Kind::Array {
                element: Box::new(element),
                counts,
            }
        }
        None => element_kind(type_name, json, common)?,
    };
    Ok(FieldSpec {
        versions: Versions::parse(str_of(json, "versions")?)?,
        nullable: optional_versions(json, "nullableVersions")?,
        tagged: optional_versions(json, "taggedVersions")?,
        tag: json
            .get("tag")
            .and_then(Value::as_u64)
            .and_then(|t| u32::try_from(t).ok()),
        name,
        entity,
        kind,
    })
}

/// The layout of a (non-array) type: a primitive, or a structure defined inline or among
/// the message's common structures.
fn element_kind(
    type_name: &str,
    json: &Value,
    common: &HashMap<String, Value>,
) -> Result<Kind, String> {
    Ok(match type_name {
        "bool" | "int8" => Kind::Fixed(1),
        "int16" | "uint16" => Kind::Fixed(2),
        "int32" | "uint32" => Kind::Fixed(4),
        "int64" | "float64" => Kind::Fixed(8),
        "uuid" => Kind::Fixed(16),
        "string" => Kind::String,
        "bytes" | "records" => Kind::Bytes,
        other => {
            let fields = match json.get("fields") {
                Some(fields) => parse_fields(Some(fields), common)?,
                None => {
                    let st = common
                        .get(other)
                        .ok_or_else(|| format!("unknown type {other:?}"))?;
                    parse_fields(st.get("fields"), common)?
                }
            };
            Kind::Struct(fields)
        }
    })
}

/// Which limit an array's elements count against, from what its elements name.
fn array_category(name: &str, element: &Kind, entity: Option<&str>) -> Category {
    let names = |entity_type: &str| -> bool {
        match element {
            Kind::Struct(fields) => fields
                .iter()
                .any(|f| f.entity.as_deref() == Some(entity_type)),
            _ => entity == Some(entity_type),
        }
    };
    let has_field = |field: &str| match element {
        Kind::Struct(fields) => fields.iter().any(|f| f.name == field),
        _ => false,
    };
    if names("topicName") || has_field("TopicId") {
        Category::Topics
    } else if names("groupId") {
        Category::Groups
    } else if has_field("ResourceType") {
        Category::Resources
    } else if name.contains("Partition") {
        Category::Partitions
    } else {
        Category::Entries
    }
}

/// Removes `//` comments (outside strings), which Kafka's JSON files carry and JSON does
/// not allow.
fn strip_comments(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    let (mut in_string, mut escaped) = (false, false);
    while let Some(c) = chars.next() {
        if in_string {
            out.push(c);
            match (escaped, c) {
                (true, _) => escaped = false,
                (false, '\\') => escaped = true,
                (false, '"') => in_string = false,
                _ => {}
            }
        } else if c == '/' && chars.peek() == Some(&'/') {
            for skipped in chars.by_ref() {
                if skipped == '\n' {
                    out.push('\n');
                    break;
                }
            }
        } else {
            in_string = c == '"';
            out.push(c);
        }
    }
    out
}
