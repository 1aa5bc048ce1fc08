"""Language models: loading by Hugging Face id or path, their anatomy, hooks, sampling."""
