"""`img2vid serve`: the REST API and the Gradio WebUI on one port, over the persistent job queue."""
