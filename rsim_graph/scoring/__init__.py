"""How answers and trajectories are scored: answer extraction and grading (`grading`), the planner's and the
reasoner's rewards (`rewards`) and the sandbox that runs generated code (`code_exec`)."""
