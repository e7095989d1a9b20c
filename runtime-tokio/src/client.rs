//! Native client.
