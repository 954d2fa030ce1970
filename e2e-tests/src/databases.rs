//! The databases a test creates (through the services it starts), and dropping them when the
//! test is done, whether it passed or not (with the runtime's [`drop_databases`]).

pub(crate) use saga_runtime::testing::drop_databases;
