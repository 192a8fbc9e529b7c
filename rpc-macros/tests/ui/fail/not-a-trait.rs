#[rpc::service]
pub struct Svc {
    field: u32,
}

// The struct is still emitted: using it is not another error.
fn main() {
    let _ = Svc { field: 1 }.field;
}
