"""AgentInstruct's flows as distilabel Tasks driven by the YAML taxonomy.

The three flows (content transformation, seed instructions, Suggester-Editor refinement) plus the
teacher's responses (AgentInstruct paper, arXiv 2407.03502, §2).
"""
