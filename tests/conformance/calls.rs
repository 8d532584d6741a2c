//! The calls the script makes. Every body is a string, so the trace can show it.

use zferry_core::rpc::Method;

/// Answered with the request's text, prefixed.
#[derive(Debug)]
pub struct Echo;

impl Method for Echo {
    const NAME: &'static str = "conformance.echo";
    type Request = String;
    type Response = String;
}

/// Carries a stream; answered with what the server made of it.
#[derive(Debug)]
pub struct Upload;

impl Method for Upload {
    const NAME: &'static str = "conformance.upload";
    type Request = String;
    type Response = String;
}

/// A call the server does not answer.
#[derive(Debug)]
pub struct Unknown;

impl Method for Unknown {
    const NAME: &'static str = "conformance.unknown";
    type Request = String;
    type Response = String;
}
