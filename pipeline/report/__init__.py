"""Human-facing reports: the static catalog page and the deploy report (markdown, JSON, plots)."""
