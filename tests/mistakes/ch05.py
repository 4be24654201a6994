"""Realistic chapter 05 mistakes, as small edits of the solution."""
from grader.mistakes import Mistake

MISTAKES = [
    Mistake("forward drops the bias", task="ch05.forward",
            edits=[("return self.linear(x)", "return x @ self.linear.weight.T")],
            message="bias is missing"),
    Mistake("forward detaches its output", task="ch05.forward",
            edits=[("return self.linear(x)", "return self.linear(x).detach()")],
            message="does not require grad"),
    Mistake("no zero_grad in the training loop", task="ch05.train",
            edits=[("        optimizer.zero_grad()\n", "")],
            message="call optimizer.zero_grad() every epoch"),
    Mistake("mean instead of summed loss", task="ch05.train",
            edits=[('criterion = nn.MSELoss(reduction="sum")', "criterion = nn.MSELoss()")],
            message="reduction='sum'"),
    Mistake("loss tensors kept instead of floats", task="ch05.train",
            edits=[("losses.append(loss.item())", "losses.append(loss)")],
            message="append loss.item()"),
    Mistake("ReLU left out of TwoLayerNet", task="ch05.two_layer",
            edits=[("self.linear2(self.linear1(x).clamp(min=0))", "self.linear2(self.linear1(x))")],
            message="ReLU is missing"),
    Mistake("middle layer applied once whatever the depth", task="ch05.dynamic",
            edits=[("        for _ in range(depth):\n            h = self.middle_linear(h).clamp(min=0)\n",
                    "        h = self.middle_linear(h).clamp(min=0)\n")],
            message="same middle_linear `depth` times"),
]
