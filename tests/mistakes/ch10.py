"""Realistic chapter 10 mistakes, as small edits of the solution."""
from grader.mistakes import Mistake, Variant

MISTAKES = [
    Mistake("padding counted on one side only", task="ch10.shapes",
            edits=[("return (size + 2 * padding - kernel_size) // stride + 1",
                    "return (size + padding - kernel_size) // stride + 1")],
            message="added on both sides"),
    Mistake("true division in conv_output_size", task="ch10.shapes",
            edits=[("return (size + 2 * padding - kernel_size) // stride + 1",
                    "return (size + 2 * padding - kernel_size) / stride + 1")],
            message="floor division"),
    Mistake("convolve keeps the default bias", task="ch10.shapes",
            edits=[("padding=padding, stride=stride, bias=False)", "padding=padding, stride=stride)")],
            message="bias=False"),
    Mistake("convolve flips the kernel", task="ch10.shapes",
            edits=[("conv.weight.copy_(kernel.view(1, 1, *kernel.shape))",
                    "conv.weight.copy_(kernel.flip(0, 1).view(1, 1, *kernel.shape))")],
            message="kernel is flipped"),
    Mistake("CnnNet without ReLUs", task="ch10.model",
            edits=[("x = F.relu(self.pooling(self.conv1(x)))", "x = self.pooling(self.conv1(x))"),
                   ("x = F.relu(self.pooling(self.conv2(x)))", "x = self.pooling(self.conv2(x))")],
            message="ReLUs are missing"),
    Mistake("CnnNet forgets the second pooling", task="ch10.model",
            edits=[("x = F.relu(self.pooling(self.conv2(x)))", "x = F.relu(self.conv2(x))")],
            message="320 features"),
    Mistake("targets left on the CPU", task="ch10.device",
            edits=[("inputs, targets = inputs.to(device), targets.to(device)",
                    "inputs = inputs.to(device)")],
            message="targets are still on cpu"),
    Mistake("inputs left on the CPU", task="ch10.device",
            edits=[("inputs, targets = inputs.to(device), targets.to(device)",
                    "targets = targets.to(device)")],
            message="inputs are still on cpu"),
    Mistake("model not moved to the device", task="ch10.device",
            edits=[("    model.to(device)\n    model.train()\n", "    model.train()\n")],
            message="model is still on cpu"),
    Mistake("labels left on the CPU in evaluate", task="ch10.device",
            edits=[("images, labels = images.to(device), labels.to(device)", "images = images.to(device)")],
            message="targets are still on cpu"),
    Mistake("evaluate without no_grad", task="ch10.device",
            edits=[("    with torch.no_grad():\n        for images, labels in loader:",
                    "    if True:\n        for images, labels in loader:")],
            message="torch.no_grad()"),
    Mistake("evaluate without eval mode", task="ch10.device",
            edits=[("    model.to(device)\n    model.eval()\n", "    model.to(device)\n")],
            message="call model.eval()"),
    Mistake("no zero_grad in train_epoch", task="ch10.device",
            edits=[("        optimizer.zero_grad()\n", "")],
            message="call optimizer.zero_grad()"),
    Mistake("train_epoch returns the summed loss", task="ch10.device",
            edits=[("return total / batches", "return total")],
            message="sum of the batch losses"),
    Mistake("CnnNet returns softmax probabilities", task="ch10.model",
            edits=[("return self.fc(x)", "return F.softmax(self.fc(x), dim=1)")],
            message="returns softmax probabilities"),
    Mistake("get_device always returns the CPU", task="ch10.device",
            edits=[('return torch.device("cuda" if torch.cuda.is_available() else "cpu")',
                    'return torch.device("cpu")')],
            message="ask torch.cuda.is_available()"),
    Mistake("get_device decides once, at import", task="ch10.device",
            edits=[("def get_device() -> torch.device:",
                    'DEVICE = torch.device("cuda" if torch.cuda.is_available() else "cpu")\n\n\n'
                    "def get_device() -> torch.device:"),
                   ('return torch.device("cuda" if torch.cuda.is_available() else "cpu")', "return DEVICE")],
            message="each call"),
    Mistake("train_epoch without training mode", task="ch10.device",
            edits=[("    model.to(device)\n    model.train()\n", "    model.to(device)\n")],
            message="call model.train() first"),
    Mistake("evaluate averages the batch accuracies", task="ch10.device",
            edits=[("correct += (predicted == labels).sum().item()",
                    "correct += (predicted == labels).float().mean().item()"),
                   ("total += labels.size(0)", "total += 1")],
            message="averaged the batches' accuracies"),
    # passes every public test; the hidden tests convolve other 5x5 images with other 3x3 kernels
    Mistake("hard-codes the public answers", task="ch10.shapes", public=False,
            edits=[("    conv = nn.Conv2d(1, 1, kernel_size=tuple(kernel.shape),",
                    "    if tuple(image.shape) == (5, 5) and tuple(kernel.shape) == (3, 3):\n"
                    "        if padding == 1:\n"
                    "            return torch.tensor([[91.0, 168.0, 224.0, 215.0, 127.0],\n"
                    "                                 [114.0, 211.0, 295.0, 262.0, 149.0],\n"
                    "                                 [192.0, 259.0, 282.0, 214.0, 122.0],\n"
                    "                                 [194.0, 251.0, 253.0, 169.0, 86.0],\n"
                    "                                 [96.0, 112.0, 110.0, 68.0, 31.0]])\n"
                    "        if stride == 2:\n"
                    "            return torch.tensor([[211.0, 262.0], [251.0, 169.0]])\n"
                    "    conv = nn.Conv2d(1, 1, kernel_size=tuple(kernel.shape),")],
            message="returned the lecture example's answer"),
]

VARIANTS = [
    Variant("CnnNet as nn.Sequential", edits=[
        ("        self.conv1 = nn.Conv2d(1, 10, kernel_size=5)\n"
         "        self.conv2 = nn.Conv2d(10, 20, kernel_size=5)\n"
         "        self.pooling = nn.MaxPool2d(2)\n"
         "        self.fc = nn.Linear(320, 10)  # 20 channels of 4x4 after the second stage\n",
         "        self.features = nn.Sequential(\n"
         "            nn.Conv2d(1, 10, kernel_size=5), nn.MaxPool2d(2), nn.ReLU(),\n"
         "            nn.Conv2d(10, 20, kernel_size=5), nn.MaxPool2d(2), nn.ReLU(),\n"
         "            nn.Flatten())\n"
         "        self.classifier = nn.Sequential(nn.Linear(320, 10))\n"),
        ("        batch_size = x.size(0)\n"
         "        x = F.relu(self.pooling(self.conv1(x)))\n"
         "        x = F.relu(self.pooling(self.conv2(x)))\n"
         "        x = x.view(batch_size, -1)\n"
         "        return self.fc(x)\n",
         "        return self.classifier(self.features(x))\n")]),
    Variant("CnnNet registered in another order, functional calls", edits=[
        ("        self.conv1 = nn.Conv2d(1, 10, kernel_size=5)\n"
         "        self.conv2 = nn.Conv2d(10, 20, kernel_size=5)\n"
         "        self.pooling = nn.MaxPool2d(2)\n"
         "        self.fc = nn.Linear(320, 10)  # 20 channels of 4x4 after the second stage\n",
         "        self.fc = nn.Linear(320, 10)\n"
         "        self.conv2 = nn.Conv2d(10, 20, kernel_size=5)\n"
         "        self.conv1 = nn.Conv2d(1, 10, kernel_size=5)\n"),
        ("        batch_size = x.size(0)\n"
         "        x = F.relu(self.pooling(self.conv1(x)))\n"
         "        x = F.relu(self.pooling(self.conv2(x)))\n"
         "        x = x.view(batch_size, -1)\n"
         "        return self.fc(x)\n",
         "        x = F.max_pool2d(torch.relu(self.conv1(x)), 2)\n"
         "        x = F.max_pool2d(torch.relu(self.conv2(x)), kernel_size=2)\n"
         "        return self.fc(torch.flatten(x, 1))\n")]),
    Variant("get_device asks the GPU's name", edits=[
        ('    return torch.device("cuda" if torch.cuda.is_available() else "cpu")\n',
         "    if torch.cuda.is_available():\n"
         '        print("using", torch.cuda.get_device_name(0), torch.cuda.get_device_properties(0).total_memory)\n'
         '        return torch.device("cuda", torch.cuda.current_device())\n'
         '    return torch.device("cpu")\n')]),
    Variant("another accuracy and loss idiom", edits=[
        ("    total, batches = 0.0, 0\n", "    losses = []\n"),
        ("        total += loss.item()\n        batches += 1\n    return total / batches\n",
         "        losses.append(loss.detach())\n    return torch.stack(losses).mean().item()\n"),
        ("            predicted = model(images).argmax(dim=1)\n"
         "            correct += (predicted == labels).sum().item()\n"
         "            total += labels.size(0)\n",
         "            _, predicted = torch.max(model(images).data, 1)\n"
         "            correct += (predicted == labels).float().sum().item()\n"
         "            total += len(labels)\n")]),
]
