"""Real-robot infrastructure: robot server, FrankaEnv client, cameras, teleop devices."""
