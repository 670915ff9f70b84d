"""The web app behind app.py: its page (gradio) and the session that holds one loaded network."""
