//! Principals and roles from verified client certificates.
//!
//! rustls has already checked the chain, the validity period and the key usage when this
//! module sees a certificate; what is left is naming: which principal a certificate stands
//! for. Operators coming from Kafka know `ssl.principal.mapping.rules`, so the rules use the
//! same syntax (`RULE:pattern/replacement/[LU]`, `DEFAULT`) over the RFC 2253 subject DN, in
//! order, first match wins. Two differences, both deliberate: `DEFAULT` yields the subject's
//! CN (Kafka yields the whole DN, which makes unwieldy principals), and a certificate no rule
//! matches is refused instead of falling back silently. A SAN (URI, DNS or email) can name
//! the principal instead, and roles can come from the subject's OU values.

use regex::Regex;
use serde::Deserialize;
use x509_parser::extensions::GeneralName;
use x509_parser::prelude::{FromDer, X509Certificate};
use x509_parser::x509::X509Name;

/// Longest principal name a certificate may map to.
const MAX_PRINCIPAL_LEN: usize = 255;

/// `[auth.mtls]`: how a client certificate maps to a principal and roles.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MtlsMappingConfig {
    /// Kafka-style mapping rules over the RFC 2253 subject DN, tried in order. Empty means
    /// `["DEFAULT"]` (the CN).
    #[serde(default)]
    pub rules: Vec<String>,
    /// Take the principal from the first SAN of this type instead of the subject.
    pub san: Option<SanType>,
    /// Where roles come from (`ou`: every OU of the subject). None: no roles.
    pub roles_from: Option<RoleSource>,
}

/// A subject alternative name type that can name the principal.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SanType {
    /// A URI SAN (e.g. a SPIFFE id).
    Uri,
    /// A DNS name SAN.
    Dns,
    /// An rfc822 (email) SAN.
    Email,
}

/// Where roles are read from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RoleSource {
    /// The subject's organizational unit (OU) values.
    Ou,
}

impl MtlsMappingConfig {
    /// Every problem, as (key, message), keys relative to the table (`rules[1]`).
    pub fn validate(&self) -> Vec<(String, String)> {
        self.rules
            .iter()
            .enumerate()
            .filter_map(|(i, r)| Rule::parse(r).err().map(|e| (format!("rules[{i}]"), e)))
            .collect()
    }
}

/// The identity a certificate maps to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsIdentity {
    /// The subject DN in RFC 2253 form (`CN=alice,OU=dev,O=Example`).
    pub subject: String,
    /// The principal name.
    pub principal: String,
    /// Roles from the certificate.
    pub roles: Vec<String>,
}

/// Why a certificate could not be mapped.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MapError {
    /// The certificate does not parse.
    #[error("certificate does not parse: {0}")]
    Parse(String),
    /// No rule matched the subject, or the named SAN is missing.
    #[error("no mapping rule matches subject {0:?}")]
    NoMatch(String),
    /// The mapping produced an unusable principal name.
    #[error("mapped principal is empty, too long or has control characters")]
    BadPrincipal,
}

/// One mapping rule.
#[derive(Debug, Clone)]
enum Rule {
    /// The subject's CN.
    Default,
    /// A regex over the whole DN with a replacement and an optional case change.
    Pattern {
        regex: Regex,
        replacement: String,
        case: Option<Case>,
    },
}

#[derive(Debug, Clone, Copy)]
enum Case {
    Lower,
    Upper,
}

impl Rule {
    fn parse(text: &str) -> Result<Rule, String> {
        let text = text.trim();
        if text == "DEFAULT" {
            return Ok(Rule::Default);
        }
        let body = text.strip_prefix("RULE:").ok_or_else(|| {
            format!("{text:?}: expected DEFAULT or RULE:pattern/replacement/[LU]")
        })?;
        let parts: Vec<&str> = body.split('/').collect();
        let (pattern, replacement, flags) = match parts.as_slice() {
            [p, r] => (*p, *r, ""),
            [p, r, f] => (*p, *r, *f),
            _ => {
                return Err(format!(
                    "{text:?}: expected RULE:pattern/replacement/ with an optional L or U"
                ))
            }
        };
        let case = match flags {
            "" => None,
            "L" => Some(Case::Lower),
            "U" => Some(Case::Upper),
            other => return Err(format!("{text:?}: unknown flag {other:?} (L or U)")),
        };
        let regex = Regex::new(&format!("^(?:{pattern})$"))
            .map_err(|e| format!("{text:?}: bad pattern: {e}"))?;
        Ok(Rule::Pattern {
            regex,
            replacement: replacement.to_string(),
            case,
        })
    }

    fn apply(&self, dn: &str, cn: Option<&str>) -> Option<String> {
        match self {
            Rule::Default => cn.map(str::to_string),
            Rule::Pattern {
                regex,
                replacement,
                case,
            } => {
                if !regex.is_match(dn) {
                    return None;
                }
                let mapped = regex.replace(dn, replacement.as_str()).into_owned();
                Some(match case {
                    None => mapped,
                    Some(Case::Lower) => mapped.to_lowercase(),
                    Some(Case::Upper) => mapped.to_uppercase(),
                })
            }
        }
    }
}

/// Maps verified client certificates to identities.
#[derive(Debug, Clone)]
pub struct PrincipalMapper {
    rules: Vec<Rule>,
    san: Option<SanType>,
    roles_from: Option<RoleSource>,
}

impl PrincipalMapper {
    /// Builds a mapper; fails on a rule that does not parse.
    pub fn new(config: &MtlsMappingConfig) -> Result<PrincipalMapper, String> {
        let rules = if config.rules.is_empty() {
            vec![Rule::Default]
        } else {
            config
                .rules
                .iter()
                .map(|r| Rule::parse(r))
                .collect::<Result<Vec<_>, _>>()?
        };
        Ok(PrincipalMapper {
            rules,
            san: config.san,
            roles_from: config.roles_from,
        })
    }

    /// The identity of the certificate `der` (the leaf, DER-encoded).
    pub fn map(&self, der: &[u8]) -> Result<TlsIdentity, MapError> {
        let (_, cert) =
            X509Certificate::from_der(der).map_err(|e| MapError::Parse(e.to_string()))?;
        let subject = rfc2253(cert.subject());
        let principal = match self.san {
            Some(kind) => {
                first_san(&cert, kind).ok_or_else(|| MapError::NoMatch(subject.clone()))?
            }
            None => {
                let cn = cert
                    .subject()
                    .iter_common_name()
                    .next()
                    .and_then(|a| a.as_str().ok());
                self.rules
                    .iter()
                    .find_map(|r| r.apply(&subject, cn))
                    .ok_or_else(|| MapError::NoMatch(subject.clone()))?
            }
        };
        if principal.is_empty()
            || principal.len() > MAX_PRINCIPAL_LEN
            || principal.chars().any(char::is_control)
        {
            return Err(MapError::BadPrincipal);
        }
        let roles = match self.roles_from {
            None => Vec::new(),
            Some(RoleSource::Ou) => cert
                .subject()
                .iter_organizational_unit()
                .filter_map(|a| a.as_str().ok())
                .filter(|r| !r.is_empty() && !r.chars().any(char::is_control))
                .map(str::to_string)
                .collect(),
        };
        Ok(TlsIdentity {
            subject,
            principal,
            roles,
        })
    }
}

fn first_san(cert: &X509Certificate<'_>, kind: SanType) -> Option<String> {
    let san = cert.subject_alternative_name().ok()??;
    san.value
        .general_names
        .iter()
        .find_map(|name| match (kind, name) {
            (SanType::Uri, GeneralName::URI(v))
            | (SanType::Dns, GeneralName::DNSName(v))
            | (SanType::Email, GeneralName::RFC822Name(v)) => Some(v.to_string()),
            _ => None,
        })
}

/// The subject in RFC 2253 form: last RDN first, `,` between RDNs, `+` inside one.
pub fn rfc2253(name: &X509Name<'_>) -> String {
    let mut rdns: Vec<String> = name
        .iter()
        .map(|rdn| {
            rdn.iter()
                .map(|attr| {
                    let oid = attr.attr_type().to_id_string();
                    let key = match oid.as_str() {
                        "2.5.4.3" => "CN",
                        "2.5.4.11" => "OU",
                        "2.5.4.10" => "O",
                        "2.5.4.7" => "L",
                        "2.5.4.8" => "ST",
                        "2.5.4.6" => "C",
                        "2.5.4.9" => "STREET",
                        "0.9.2342.19200300.100.1.25" => "DC",
                        "0.9.2342.19200300.100.1.1" => "UID",
                        other => other,
                    };
                    let value = attr
                        .as_str()
                        .map(escape)
                        .unwrap_or_else(|_| format!("#{}", hex(attr.as_slice())));
                    format!("{key}={value}")
                })
                .collect::<Vec<_>>()
                .join("+")
        })
        .collect();
    rdns.reverse();
    rdns.join(",")
}

fn escape(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    let last = value.chars().count().saturating_sub(1);
    for (i, c) in value.chars().enumerate() {
        let special = matches!(c, ',' | '+' | '"' | '\\' | '<' | '>' | ';')
            || (i == 0 && (c == '#' || c == ' '))
            || (i == last && c == ' ');
        if special {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use rcgen::{CertificateParams, DnType, KeyPair, SanType as RcSan};

    fn cert(cn: &str, ous: &[&str], sans: Vec<RcSan>) -> Vec<u8> {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params
            .distinguished_name
            .push(DnType::OrganizationName, "Example");
        for ou in ous {
            params
                .distinguished_name
                .push(DnType::OrganizationalUnitName, *ou);
        }
        params.distinguished_name.push(DnType::CommonName, cn);
        params.subject_alt_names = sans;
        let key = KeyPair::generate().unwrap();
        params.self_signed(&key).unwrap().der().to_vec()
    }

    fn mapper(rules: &[&str], san: Option<SanType>, roles: Option<RoleSource>) -> PrincipalMapper {
        PrincipalMapper::new(&MtlsMappingConfig {
            rules: rules.iter().map(|r| r.to_string()).collect(),
            san,
            roles_from: roles,
        })
        .unwrap()
    }

    #[test]
    fn default_is_the_common_name_and_the_subject_is_rfc2253() {
        let id = mapper(&[], None, None)
            .map(&cert("alice", &["dev"], vec![]))
            .unwrap();
        assert_eq!(id.principal, "alice");
        // rcgen picks the RDN order; the string is that order reversed, comma-joined.
        let mut parts: Vec<&str> = id.subject.split(',').collect();
        parts.sort_unstable();
        assert_eq!(
            parts,
            vec!["CN=alice", "O=Example", "OU=dev"],
            "{}",
            id.subject
        );
        assert!(id.roles.is_empty());
    }

    #[test]
    fn rules_match_the_whole_dn_in_order_with_case_flags() {
        let der = cert("Alice.Smith", &["payments"], vec![]);
        let m = mapper(
            &[
                "RULE:^.*OU=ops.*$/ops/",
                "RULE:^(?:.*,)?CN=([^,]+)(?:,.*)?$/$1@payments/L",
                "DEFAULT",
            ],
            None,
            None,
        );
        assert_eq!(m.map(&der).unwrap().principal, "alice.smith@payments");
        let upper = mapper(&["RULE:^(?:.*,)?CN=([^,]+)(?:,.*)?$/$1/U"], None, None);
        assert_eq!(upper.map(&der).unwrap().principal, "ALICE.SMITH");
    }

    #[test]
    fn no_matching_rule_is_an_error_not_a_fallback() {
        let m = mapper(&["RULE:^(?:.*,)?CN=bob(?:,.*)?$/bob/"], None, None);
        assert!(matches!(
            m.map(&cert("alice", &[], vec![])),
            Err(MapError::NoMatch(_))
        ));
    }

    #[test]
    fn principal_from_san_and_roles_from_ou() {
        let der = cert(
            "ignored",
            &["readers"],
            vec![
                RcSan::DnsName("svc.example".try_into().unwrap()),
                RcSan::URI("spiffe://example/ns/prod/sa/orders".try_into().unwrap()),
                RcSan::Rfc822Name("orders@example.com".try_into().unwrap()),
            ],
        );
        let uri = mapper(&[], Some(SanType::Uri), Some(RoleSource::Ou))
            .map(&der)
            .unwrap();
        assert_eq!(uri.principal, "spiffe://example/ns/prod/sa/orders");
        assert_eq!(uri.roles, vec!["readers"]);
        let email = mapper(&[], Some(SanType::Email), None).map(&der).unwrap();
        assert_eq!(email.principal, "orders@example.com");
        let dns = mapper(&[], Some(SanType::Dns), None).map(&der).unwrap();
        assert_eq!(dns.principal, "svc.example");
        let missing = mapper(&[], Some(SanType::Uri), None).map(&cert("x", &[], vec![]));
        assert!(matches!(missing, Err(MapError::NoMatch(_))));
    }

    #[test]
    fn garbage_is_an_error() {
        assert!(matches!(
            mapper(&[], None, None).map(b"not a certificate"),
            Err(MapError::Parse(_))
        ));
    }

    #[test]
    fn bad_rules_are_reported_with_their_index() {
        let config = MtlsMappingConfig {
            rules: vec![
                "DEFAULT".into(),
                "RULE:(/x/".into(),
                "RULE:a/b/Q".into(),
                "nonsense".into(),
            ],
            ..Default::default()
        };
        let keys: Vec<String> = config.validate().into_iter().map(|(k, _)| k).collect();
        assert_eq!(keys, vec!["rules[1]", "rules[2]", "rules[3]"]);
    }

    #[test]
    fn special_characters_are_escaped() {
        assert_eq!(escape("a,b"), "a\\,b");
        assert_eq!(escape(" x "), "\\ x\\ ");
        assert_eq!(escape("#1"), "\\#1");
    }
}
