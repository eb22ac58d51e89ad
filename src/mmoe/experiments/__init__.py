"""Paper reproductions: each experiment is one module with a driver writing results."""
