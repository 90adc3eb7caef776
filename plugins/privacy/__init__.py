"""Privacy plugins: GDPR/CCPA data export and erasure contributions."""
