//! Guest instances kept for another request, when `GUEST_INSTANCE_REUSE`
//! allows more than one request per instance.

use std::sync::Mutex;

use wasmtime::Store;

use super::sandbox::Sandbox;
use crate::bindings::Service;

/// An instantiated guest and its store, between requests.
pub struct Instance {
    pub store: Store<Sandbox>,
    pub service: Service,
    /// Requests it has served so far.
    pub served: u32,
}

/// The idle instances of one guest. They go when the guest is swapped out.
pub struct IdleInstances {
    idle: Mutex<Vec<Instance>>,
    capacity: usize,
    requests_per_instance: u32,
}

impl IdleInstances {
    /// Keeps at most `capacity` idle instances, each for at most
    /// `requests_per_instance` requests in all.
    pub fn new(capacity: usize, requests_per_instance: u32) -> Self {
        Self {
            idle: Mutex::new(Vec::new()),
            capacity,
            requests_per_instance,
        }
    }

    /// An idle instance, most recently used first (its memory is warm).
    pub fn take(&self) -> Option<Instance> {
        self.idle.lock().unwrap_or_else(|e| e.into_inner()).pop()
    }

    /// Keeps `instance` for another request unless it has served its share
    /// or enough are idle already; otherwise it is dropped.
    pub fn give_back(&self, instance: Instance) {
        if instance.served >= self.requests_per_instance {
            return;
        }
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        if idle.len() < self.capacity {
            idle.push(instance);
        }
    }
}
