//! `#[cfg]`, lint and doc attributes on methods are carried to every
//! generated item of the method.

#![deny(warnings)]

#[rpc::service]
pub trait Platform {
    /// Always there.
    #[cfg(all())]
    async fn present(&self) -> u8;

    /// Never compiled: neither the trait, the client nor the server has it.
    #[cfg(any())]
    async fn absent(&self, x: NoSuchType) -> NoSuchType;

    #[allow(clippy::too_many_arguments)]
    async fn many(&self, a: u8, b: u8, c: u8, d: u8, e: u8, f: u8, g: u8, h: u8) -> u8;

    #[cfg_attr(all(), doc = "Documented through cfg_attr.")]
    #[deprecated = "use `present`"]
    async fn old(&self) -> u8;
}

struct Impl;

#[allow(deprecated)]
impl Platform for Impl {
    async fn present(&self) -> u8 {
        1
    }
    async fn many(&self, a: u8, b: u8, c: u8, d: u8, e: u8, f: u8, g: u8, h: u8) -> u8 {
        a + b + c + d + e + f + g + h
    }
    async fn old(&self) -> u8 {
        0
    }
}

#[allow(dead_code)]
fn client_has_present(client: &PlatformClient) {
    let _ = client.present();
}

#[tokio::main]
async fn main() {
    use rpc::__private::Service;
    assert_eq!(Impl.present().await, 1);
    assert_eq!(Impl.many(1, 1, 1, 1, 1, 1, 1, 1).await, 8);
    let names: Vec<_> = PlatformServer::new(Impl).methods().iter().map(|m| m.name).collect();
    assert_eq!(names, ["Platform.present", "Platform.many", "Platform.old"]);
}
