//! The registry client against a real registry (Debian's docker-registry, the CNCF distribution
//! registry 2.8) started by dth-testkit on a free 127.0.0.1 port. Real peers catch what mocks
//! cannot: Location formats, status codes of mounts, digest checks on PUT.

mod client;
