"""The Code Agent's room: state, graph, prompts, checks, run step, diagnosis, report, approval."""
