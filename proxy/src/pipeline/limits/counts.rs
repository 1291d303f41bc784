//! What one request may name: the kinds of items counted and their limits.

use crate::config::LimitsConfig;

/// A kind of item a request names, each with its own limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Category {
    /// Topics (by name or id), over every array of topics in the request.
    Topics,
    /// Partitions, summed over every topic.
    Partitions,
    /// Consumer groups.
    Groups,
    /// Config resources and ACL bindings.
    Resources,
    /// Every other array element and tagged field (config entries, members, assignments,
    /// transactional and producer ids, ...).
    Entries,
}

impl Category {
    /// Every category.
    pub const ALL: [Category; 5] = [
        Category::Topics,
        Category::Partitions,
        Category::Groups,
        Category::Resources,
        Category::Entries,
    ];

    /// Label for metrics and audit events; also the config key's stem.
    pub fn as_str(self) -> &'static str {
        match self {
            Category::Topics => "topics",
            Category::Partitions => "partitions",
            Category::Groups => "groups",
            Category::Resources => "resources",
            Category::Entries => "entries",
        }
    }

    fn index(self) -> usize {
        match self {
            Category::Topics => 0,
            Category::Partitions => 1,
            Category::Groups => 2,
            Category::Resources => 3,
            Category::Entries => 4,
        }
    }
}

/// Items counted so far, per category.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts([u64; 5]);

impl Counts {
    /// The count of `category`.
    pub fn get(&self, category: Category) -> u64 {
        self.0[category.index()]
    }

    /// Adds `n` to `category`'s count and returns the new count.
    pub fn add(&mut self, category: Category, n: u64) -> u64 {
        let slot = &mut self.0[category.index()];
        *slot = slot.saturating_add(n);
        *slot
    }
}

/// The most items of each category one request may name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ItemLimits(Counts);

impl ItemLimits {
    /// The limits configured in `[limits]`.
    pub fn from_config(config: &LimitsConfig) -> ItemLimits {
        let mut limits = Counts::default();
        limits.add(Category::Topics, config.max_topics_per_request);
        limits.add(Category::Partitions, config.max_partitions_per_request);
        limits.add(Category::Groups, config.max_groups_per_request);
        limits.add(Category::Resources, config.max_resources_per_request);
        limits.add(Category::Entries, config.max_entries_per_request);
        ItemLimits(limits)
    }

    /// The limit of `category`.
    pub fn get(&self, category: Category) -> u64 {
        self.0.get(category)
    }
}
