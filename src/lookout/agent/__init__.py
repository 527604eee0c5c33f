"""The language agent: plan schema, planner (4-bit Llama + LoRA), executor and safety, without ROS."""
