"""batterytrace: a national traction-battery traceability registry."""
