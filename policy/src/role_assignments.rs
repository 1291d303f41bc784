//! The subjects a request speaks for, with the policy files' `g` lines indexed by principal,
//! so that working out a request's roles does not scan every `g` line of a large estate.

use std::collections::HashMap;

use crate::rules::Assignment;

/// `g` lines by principal, as positions in file order.
#[derive(Debug, Default)]
pub(crate) struct RoleAssignments {
    assignments: Vec<Assignment>,
    by_principal: HashMap<String, Vec<usize>>,
}

impl RoleAssignments {
    /// Indexes the `g` lines (in file order).
    pub fn new(assignments: Vec<Assignment>) -> RoleAssignments {
        let mut by_principal: HashMap<String, Vec<usize>> = HashMap::new();
        for (i, a) in assignments.iter().enumerate() {
            by_principal.entry(a.principal.clone()).or_default().push(i);
        }
        RoleAssignments {
            assignments,
            by_principal,
        }
    }

    /// Every `g` line, in file order.
    pub fn all(&self) -> &[Assignment] {
        &self.assignments
    }

    /// The subjects a request speaks for: the principal, `User:*`, `Role:<r>` for every
    /// given role, and roles assigned by `g` lines to the principal or to `User:*` (in file
    /// order), each once.
    pub fn subjects(&self, principal: &str, roles: &[String]) -> Vec<String> {
        // A principal is always `User:...`; anything else (say a principal that reads
        // `Role:admin`) must not pick up a role's rules, so it only counts as `User:*`.
        let mut subjects = Vec::with_capacity(2 + roles.len());
        if principal.starts_with("User:") && principal != "User:*" {
            subjects.push(principal.to_string());
        }
        subjects.push("User:*".to_string());
        for r in roles {
            let s = format!("Role:{r}");
            if !subjects.contains(&s) {
                subjects.push(s);
            }
        }
        let none: &[usize] = &[];
        let own = self.by_principal.get(principal).map_or(none, Vec::as_slice);
        let everyone = if principal == "User:*" {
            none
        } else {
            self.by_principal.get("User:*").map_or(none, Vec::as_slice)
        };
        // Merge the two position lists so roles keep file order.
        let (mut i, mut j) = (0, 0);
        while i < own.len() || j < everyone.len() {
            let take_own = j >= everyone.len() || (i < own.len() && own[i] < everyone[j]);
            let position = if take_own {
                i += 1;
                own[i - 1]
            } else {
                j += 1;
                everyone[j - 1]
            };
            let role = &self.assignments[position].role;
            if !subjects.contains(role) {
                subjects.push(role.clone());
            }
        }
        subjects
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use proptest::prelude::*;

    use super::*;

    /// The subjects as computed before `g` lines were indexed: a scan in file order.
    fn scan(assignments: &[Assignment], principal: &str, roles: &[String]) -> Vec<String> {
        let mut subjects = Vec::new();
        if principal.starts_with("User:") && principal != "User:*" {
            subjects.push(principal.to_string());
        }
        subjects.push("User:*".to_string());
        for r in roles {
            let s = format!("Role:{r}");
            if !subjects.contains(&s) {
                subjects.push(s);
            }
        }
        for a in assignments {
            if (a.principal == principal || a.principal == "User:*") && !subjects.contains(&a.role)
            {
                subjects.push(a.role.clone());
            }
        }
        subjects
    }

    proptest! {
        #[test]
        fn same_subjects_in_the_same_order_as_a_scan(
            lines in prop::collection::vec(("User:[ab*]", "Role:[xyz]"), 0..12),
            principal in "User:[abc*]|Role:x",
            roles in prop::collection::vec("[xyz]", 0..3),
        ) {
            let assignments: Vec<Assignment> = lines
                .into_iter()
                .map(|(principal, role)| Assignment { principal, role, origin: Arc::from("t") })
                .collect();
            let index = RoleAssignments::new(assignments.clone());
            prop_assert_eq!(
                index.subjects(&principal, &roles),
                scan(&assignments, &principal, &roles)
            );
        }
    }
}
