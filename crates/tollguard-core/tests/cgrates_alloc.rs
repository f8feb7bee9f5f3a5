//! Pricing on a CGRateS plan allocates nothing: counted with a global allocator.

use jiff::Timestamp;
use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};
use tollguard_core::cgrates::Plan;

#[path = "common/cgrates_plan.rs"]
mod cgrates_plan;

struct Counting;
static ALLOCATIONS: AtomicUsize = AtomicUsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static A: Counting = Counting;

#[test]
fn a_price_allocates_nothing() {
    let dir = std::env::temp_dir().join(format!("tg-cgr-alloc-{}", std::process::id()));
    let numbers = cgrates_plan::write(&dir, 2_000, 2_000);
    let plan = Plan::load(&dir).unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
    // Mondays and a Saturday, across the peak boundary and midnight.
    let starts: Vec<Timestamp> = ["2024-05-13T07:59:00Z", "2024-05-13T23:58:00Z", "2024-05-18T12:00:00Z"]
        .iter()
        .map(|s| s.parse().unwrap())
        .collect();
    let before = ALLOCATIONS.load(Ordering::Relaxed);
    let mut total = rust_decimal::Decimal::ZERO;
    let mut capped = 0;
    for (i, n) in numbers.iter().enumerate() {
        let at = starts[i % starts.len()];
        let t = plan.tariff("cgrates.org", "call", "acme", n, at).unwrap();
        total += plan.cost(&t, at, (i as u64 % 400) * 1_000_000_000).unwrap();
        capped += usize::from(plan.max_usage(&t, at, 3_600_000_000_000).is_some());
    }
    let after = ALLOCATIONS.load(Ordering::Relaxed);
    assert_eq!(after - before, 0, "allocations while pricing {} calls", numbers.len());
    assert!(total > rust_decimal::Decimal::ZERO && capped > 0);
}
