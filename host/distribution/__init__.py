"""Getting plugin modules from elsewhere: OCI registries (`oci://` references)."""
