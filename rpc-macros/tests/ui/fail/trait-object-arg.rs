#[rpc::service]
pub trait Svc {
    async fn run(&self, task: Box<dyn Fn() + Send>);
}

fn main() {}
