"""Reading site data, preprocessing images, patient-level splits and the processed dataset on disk."""
