"""The dashboard's side of the package: the rows its pages show, and Streamlit's server."""
